"""Converters to the COCO annotation format that :class:`~vtk.data.CocoDetectionDataModule`
reads, and the ``vtk convert`` command that runs them.

    vtk convert voc BCCD --split train --out data/bccd/train.json
    vtk convert voc VOCdevkit/VOC2007 VOCdevkit/VOC2012 --split trainval --out voc0712.json
    vtk convert yolo my_set/data.yaml --split train --out my_set/train.json
    vtk convert coco export/_annotations.coco.json --out export/fixed.json

Every converter writes annotation ids from 1 (pycocotools' ``COCOeval`` reads a match with
annotation id 0 as "unmatched"), reports what it leaves out or changes by file, and prints the
image folder the written ``file_name`` entries are relative to (the DataModule's ``*_images``).

* **Pascal VOC XML** (``ROOT/Annotations/<id>.xml``, ``ROOT/ImageSets/Main/<split>.txt``): VOC's
  1-based pixel coordinates become COCO's 0-based boxes (``x = xmin - 1``, ``width = xmax - xmin
  + 1``, as detectron2's VOC reader); categories ``--classes`` in that order (ids 1..K) or the
  sorted names found; ``difficult`` objects ``--difficult crowd`` (default: ``iscrowd: 1``, left
  out of the loss and of COCO's misses, as VOC's evaluation ignores them), ``keep`` or ``drop``.
  With several roots, ``file_name`` is relative to their common parent folder. Folder names
  match in any case (``annotations/``, ``JPEGImages``). An export that is not in VOC's folder
  layout (the raccoon set: ``annotations/*.xml`` beside ``images/*.jpg``) is read with
  ``--annotations DIR --images DIR``; an XML whose ``<filename>`` is not in the image folder is
  matched to the image of its own name (any image suffix, any case), said by file. Splits:
  ``--split NAME`` (a list in ``ImageSets/Main``), ``--split FILE`` (a ``.txt`` of ids or
  image names, one per line, or a ``.csv`` whose ``filename`` / ``image`` column, else its
  first, names the images: one row per box is fine), or ``--val_fraction F`` /
  ``--test_fraction F`` (seeded by ``--seed``): ``--out`` is then a folder that gets
  ``train.json``, ``val.json`` (and ``test.json``).

    vtk convert voc --annotations raccoon/annotations --images raccoon/images \\
        --val_fraction 0.2 --out raccoon/coco

* **YOLO txt** (ultralytics / Roboflow "YOLO" exports): ``data.yaml`` gives ``names`` (a list or
  ``{index: name}``), the split's images (a folder, a list of folders, or a ``.txt`` list of
  image paths; relative to ``path`` or to the YAML's folder); each image's labels are the
  ``.txt`` of the same name under ``labels/`` in place of ``images/``, one object per line:
  ``class cx cy w h`` in [0, 1] of the upright image (a polygon ``class x1 y1 x2 y2 ...`` gives its
  bounding box, as ultralytics does). Class k becomes category id k + 1. Images without a label
  file are kept without objects.
* **COCO** (``coco``): the file as it is, annotation ids renumbered from 1 in their order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from PIL import Image

from vtk.data.io import IMAGE_SUFFIXES, is_image_file, upright_size
from vtk.data.splits import seeded_roles
from vtk.errors import DataError

__all__ = [
    "main", "read_id_list", "renumber_annotations", "voc_folders_to_coco", "voc_to_coco",
    "yolo_to_coco",
]  # fmt: skip

Coco = dict[str, Any]


# -- Pascal VOC -------------------------------------------------------------------------------
def _number(node: ET.Element, tag: str, xml: Path) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DataError(f"{xml}: <{tag}> is missing; fix or remove the file.")
    try:
        return float(child.text)
    except ValueError:
        raise DataError(f"{xml}: <{tag}> is {child.text!r}, not a number.") from None


def _child(parent: Path, name: str) -> Path:
    """``parent/name``, or the entry of ``parent`` whose name is ``name`` in another case
    (``annotations``, ``JPEGImages`` / ``jpegimages``); ``parent/name`` when neither exists."""
    exact = parent / name
    if exact.exists() or not parent.is_dir():
        return exact
    lower = name.lower()
    return next((p for p in sorted(parent.iterdir()) if p.name.lower() == lower), exact)


def voc_image_folder(roots: list[Path]) -> Path:
    """The folder the ``file_name`` entries written by :func:`voc_to_coco` are relative to."""
    if len(roots) == 1:
        return _child(roots[0], "JPEGImages")
    return Path(os.path.commonpath([r.resolve() for r in roots]))


#: the column of a split CSV that names the images, in this order of preference
_CSV_COLUMNS = ("filename", "file_name", "file", "image", "image_id", "id", "name")


def read_id_list(path: Path) -> list[str]:
    """The image ids (file names without an image suffix) a split file lists, in order, each
    once: a ``.txt`` (one per line; VOC's ``id [flag]`` lines too) or a ``.csv`` (the column
    named ``filename`` / ``image`` ..., else the first; a header row is recognised by those
    names)."""
    import csv

    def stem(entry: str) -> str:
        name = Path(entry.strip()).name
        return Path(name).stem if Path(name).suffix.lower() in (*IMAGE_SUFFIXES, ".xml") else name

    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        column = next((header.index(c) for c in _CSV_COLUMNS if c in header), None)
        body = rows[1:] if column is not None else rows
        entries = [r[column or 0] for r in body if len(r) > (column or 0)]
    else:
        entries = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(stem(e) for e in entries if e.strip()))


def _voc_ids(root: Path, split: str | None, annotations_dir: Path | None = None) -> list[str]:
    annotations_dir = annotations_dir or _child(root, "Annotations")
    if not annotations_dir.is_dir():
        raise DataError(
            f"{annotations_dir} does not exist: a VOC folder holds Annotations/ and JPEGImages/ "
            "(give --annotations DIR --images DIR for another layout)."
        )
    xmls = {p.stem: p for p in annotations_dir.iterdir() if p.suffix.lower() == ".xml"}
    if split is None:
        return sorted(xmls)
    split_file = Path(split)
    if not split_file.is_file():
        split_file = _child(_child(root, "ImageSets"), "Main") / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(
            f"{split} is neither a list file nor {split_file} (leave out --split to take every "
            "XML, or give --val_fraction)."
        )
    ids = read_id_list(split_file)
    missing = [i for i in ids if i not in xmls]
    if missing:
        raise DataError(
            f"{split_file}: {len(missing)} of its {len(ids)} entries have no XML in "
            f"{annotations_dir} (first: {missing[0]!r}); fix the list or the folder."
        )
    return ids


def _image_for(images_dir: Path, filename: str, xml: Path, problems: list[str]) -> str | None:
    """The image an XML describes, relative to ``images_dir``: its ``<filename>``, else the
    image named as the XML (any image suffix, any case); None when there is none."""
    if (images_dir / filename).is_file():
        return filename
    wanted = {Path(filename).name.lower()}
    stems = {Path(filename).stem.lower(), xml.stem.lower()}
    for p in sorted(images_dir.iterdir()):
        if p.name.lower() in wanted or (
            p.stem.lower() in stems and p.suffix.lower() in IMAGE_SUFFIXES
        ):
            problems.append(f"{xml}: <filename> {filename!r} is not in {images_dir}; took {p.name}")
            return p.name
    problems.append(f"{xml}: no image {filename!r} (or of its name) in {images_dir}, left out")
    return None


def _voc_parse(
    annotations_dir: Path, ids: list[str], problems: list[str], images_dir: Path | None = None
) -> list:
    """(xml path, file name, width, height, [(class, difficult, box)]) of each listed XML;
    with ``images_dir``, each file name is checked there (and an XML without its image left
    out)."""
    parsed = []
    for i in ids:
        xml = annotations_dir / f"{i}.xml"
        if not xml.is_file():
            xml = next(
                (p for p in annotations_dir.glob(f"{i}.*") if p.suffix.lower() == ".xml"), xml
            )
        if not xml.is_file():
            raise DataError(f"{xml} (listed in the split) does not exist.")
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as e:
            raise DataError(f"{xml} is not valid XML: {e}.") from None
        size = tree.find("size")
        filename = (tree.findtext("filename") or "").strip() or f"{i}.jpg"
        if images_dir is not None:
            found = _image_for(images_dir, filename, xml, problems)
            if found is None:
                continue
            filename = found
        w, h = (
            (int(_number(size, "width", xml)), int(_number(size, "height", xml)))
            if size is not None
            else (None, None)
        )
        objects = []
        for obj in tree.findall("object"):
            box = obj.find("bndbox")
            if box is None:
                problems.append(f"{xml}: an object without <bndbox>, left out")
                continue
            objects.append(
                (obj.findtext("name", "").strip(), int(obj.findtext("difficult", "0") or 0),
                 [_number(box, t, xml) for t in ("xmin", "ymin", "xmax", "ymax")])
            )  # fmt: skip
        parsed.append((xml.name, filename, w, h, objects))
    return parsed


def voc_to_coco(
    roots: Path | str | list[Path | str],
    split: str | None = None,
    classes: list[str] | None = None,
    difficult: str = "crowd",
) -> tuple[Coco, list[str]]:
    """Pascal VOC folder(s) -> (the COCO dict, the problems found, one line each)."""
    if difficult not in ("crowd", "keep", "drop"):
        raise DataError(f"difficult must be crowd, keep or drop, not {difficult!r}.")
    roots = [Path(r) for r in (roots if isinstance(roots, list) else [roots])]
    folder = voc_image_folder(roots)
    parsed, problems = [], []
    for root in roots:
        prefix = (
            ""
            if len(roots) == 1
            else f"{root.resolve().relative_to(folder)}/{_child(root, 'JPEGImages').name}/"
        )
        annotations_dir = _child(root, "Annotations")
        for xml, filename, w, h, objects in _voc_parse(
            annotations_dir, _voc_ids(root, split), problems
        ):
            parsed.append((xml, prefix + filename, w, h, objects))
    return _voc_coco(parsed, classes, difficult, problems), problems


def voc_folders_to_coco(
    annotations: Path | str,
    images: Path | str,
    split: str | None = None,
    classes: list[str] | None = None,
    difficult: str = "crowd",
    fractions: tuple[float | None, float | None] = (None, None),
    seed: int = 0,
) -> tuple[dict[str, Coco], list[str]]:
    """VOC XML files in ``annotations`` describing the images in ``images`` (any layout) ->
    (``{split name: COCO dict}``, the problems found): one ``"all"`` (or ``split``) file, or
    ``train`` / ``val`` / ``test`` by the seeded ``fractions`` (val, test) of the XML files.
    ``file_name`` entries are relative to ``images``; the categories are the same in every
    file."""
    if difficult not in ("crowd", "keep", "drop"):
        raise DataError(f"difficult must be crowd, keep or drop, not {difficult!r}.")
    annotations, images = Path(annotations), Path(images)
    for folder, what in ((annotations, "--annotations"), (images, "--images")):
        if not folder.is_dir():
            raise DataError(f"{folder} ({what}) is not a folder.")
    if split is not None and not Path(split).is_file():
        raise DataError(f"--split {split}: no such list file (.txt or .csv).")
    problems: list[str] = []
    ids = _voc_ids(annotations.parent, split, annotations)
    if not ids:
        raise DataError(f"{annotations} holds no .xml file.")
    parsed = _voc_parse(annotations, ids, problems, images)
    names = classes or sorted({name for *_, objects in parsed for name, _, _ in objects})
    val, test = fractions
    if not (val or test):
        return {"all": _voc_coco(parsed, names, difficult, problems)}, problems
    import random

    roles = seeded_roles([p[0] for p in parsed], val, test, random.Random(seed))
    out = {}
    for role in ("train", "val", "test"):
        part = [p for p in parsed if roles[p[0]] == role]
        if role != "train" and not part and fractions[role == "test"]:
            raise DataError(
                f"{role}_fraction={fractions[role == 'test']} of {len(parsed)} images is no "
                f"image; raise it."
            )
        if part:
            out[role] = _voc_coco(part, names, difficult, problems)
    return out, problems


def _voc_coco(parsed: list, classes: list[str] | None, difficult: str, problems: list[str]) -> Coco:
    """The COCO dict of parsed VOC files (:func:`_voc_parse`)."""
    names = classes or sorted({name for *_, objects in parsed for name, _, _ in objects})
    category = {name: k + 1 for k, name in enumerate(names)}
    images, anns = [], []
    for image_id, (xml, filename, w, h, objects) in enumerate(parsed, start=1):
        image: dict[str, Any] = {"id": image_id, "file_name": filename}
        if w and h:
            image.update(width=w, height=h)
        images.append(image)
        for name, hard, (x1, y1, x2, y2) in objects:
            if name not in category:
                problems.append(f"{xml}: class {name!r} is not in --classes, left out")
                continue
            if hard and difficult == "drop":
                continue
            if x2 <= x1 or y2 <= y1:
                problems.append(f"{xml}: {name} box ({x1}, {y1}, {x2}, {y2}) has no area, left out")
                continue
            bw, bh = x2 - x1 + 1, y2 - y1 + 1
            anns.append(
                {"id": len(anns) + 1, "image_id": image_id, "category_id": category[name],
                 "bbox": [x1 - 1, y1 - 1, bw, bh], "area": bw * bh,
                 "iscrowd": int(bool(hard) and difficult == "crowd")}
            )  # fmt: skip
    categories = [{"id": k, "name": n, "supercategory": "none"} for n, k in category.items()]
    return {"images": images, "annotations": anns, "categories": categories}


# -- YOLO ---------------------------------------------------------------------------------------
def _yolo_names(config: dict[str, Any], path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except ValueError:
            raise DataError(f"{path}: names must be a list or {{index: name}}.") from None
        if sorted(keyed) != list(range(len(keyed))):
            raise DataError(f"{path}: the names' indices must be 0..K-1, got {sorted(keyed)}.")
        return [keyed[k] for k in range(len(keyed))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DataError(f"{path} has no 'names' (the class names, a list or {{index: name}}).")


def _yolo_images(config: dict[str, Any], split: str, path: Path) -> list[Path]:
    """The image files of a split entry, resolved as ultralytics resolves them: relative to
    ``path`` (itself relative to the YAML's folder) or, without ``path``, to the YAML's folder;
    an entry starting with ``../`` that does not exist there is tried without it (Roboflow's
    exports write ``train: ../train/images`` beside a data.yaml in the set's root)."""
    if split not in config or not config[split]:
        raise DataError(
            f"{path} has no {split!r} entry; its splits: "
            f"{[k for k in ('train', 'val', 'test') if config.get(k)]}."
        )
    root = Path(str(config.get("path") or "")).expanduser()
    base = root if root.is_absolute() else path.parent / root
    entries = config[split] if isinstance(config[split], list) else [config[split]]
    images: list[Path] = []
    for entry in entries:
        tried = [Path(entry) if Path(entry).is_absolute() else base / entry]
        if str(entry).startswith("../"):
            tried.append(base / str(entry)[3:])
        where = next((w for w in tried if w.exists()), None)
        if where is None:
            relative = f"path: {config['path']}" if config.get("path") else "the YAML's folder"
            raise DataError(
                f"{path}: the {split} entry {entry!r} names no folder or list: tried "
                f"{' and '.join(str(w) for w in tried)} (relative to {relative}). Fix the "
                "entry, or set path: to the set's root folder."
            )
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.is_file() and is_image_file(p))
        elif where.suffix == ".txt":  # a list of image paths
            for line in where.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else base / p)
        else:
            raise DataError(
                f"{path}: {split} entry {entry!r} is {where}, not a folder or a .txt list."
            )
    if not images:
        raise DataError(f"{path}: no images in the {split!r} split ({entries}).")
    return images


def _label_file(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, suffix .txt."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def yolo_to_coco(data_yaml: Path | str, split: str = "train") -> tuple[Coco, list[str], Path]:
    """A YOLO export's split -> (the COCO dict, the problems found, the image folder the
    ``file_name`` entries are relative to)."""
    import yaml

    path = Path(data_yaml).expanduser()
    if not path.is_file():
        raise DataError(f"{path} does not exist: give the export's data.yaml.")
    config = yaml.safe_load(path.read_text()) or {}
    names = _yolo_names(config, path)
    image_paths = _yolo_images(config, split, path)
    folder = Path(os.path.commonpath([p.resolve().parent for p in image_paths]))
    images, anns, problems = [], [], []
    for image_id, image_path in enumerate(image_paths, start=1):
        try:
            with Image.open(image_path) as img:
                w, h = upright_size(img)  # YOLO boxes are fractions of the upright image
        except (OSError, ValueError) as e:
            problems.append(f"{image_path}: cannot be read ({e}), left out")
            continue
        images.append(
            {"id": image_id, "file_name": image_path.resolve().relative_to(folder).as_posix(),
             "width": w, "height": h}
        )  # fmt: skip
        labels = _label_file(image_path)
        if not labels.is_file():
            continue  # an image without objects
        for n, line in enumerate(labels.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{labels}:{n}"
            try:
                k, *values = line.split()
                cls, coords = int(float(k)), [float(v) for v in values]
            except ValueError:
                problems.append(f"{where}: {line.strip()!r} is not 'class cx cy w h', left out")
                continue
            if not 0 <= cls < len(names):
                problems.append(
                    f"{where}: class {cls} is not among the {len(names)} names, left out"
                )
                continue
            if len(coords) == 4:
                cx, cy, bw, bh = coords
                x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
            elif len(coords) >= 6 and len(coords) % 2 == 0:  # a polygon: its bounding box
                x1, x2 = min(coords[0::2]), max(coords[0::2])
                y1, y2 = min(coords[1::2]), max(coords[1::2])
            else:
                problems.append(f"{where}: {len(coords)} numbers after the class, left out")
                continue
            clipped = [min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2)]
            if clipped != [x1, y1, x2, y2]:
                problems.append(f"{where}: box reaches outside the image, clipped")
            x1, y1, x2, y2 = clipped[0] * w, clipped[1] * h, clipped[2] * w, clipped[3] * h
            if x2 <= x1 or y2 <= y1:
                problems.append(f"{where}: {names[cls]} box has no area, left out")
                continue
            anns.append(
                {"id": len(anns) + 1, "image_id": image_id, "category_id": cls + 1,
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            )  # fmt: skip
    categories = [{"id": k + 1, "name": n, "supercategory": "none"} for k, n in enumerate(names)]
    return {"images": images, "annotations": anns, "categories": categories}, problems, folder


# -- COCO ---------------------------------------------------------------------------------------
def renumber_annotations(coco: Coco) -> tuple[Coco, list[str]]:
    """The COCO dict with its annotation ids renumbered 1..N in file order."""
    anns = coco.get("annotations")
    if not isinstance(anns, list):
        raise DataError("not a COCO annotation file: it has no 'annotations' list.")
    ids = [a.get("id") for a in anns]
    problems = []
    if 0 in ids:
        problems.append("annotation ids started at 0: renumbered from 1")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicate annotation ids: renumbered")
    out = dict(coco)
    out["annotations"] = [{**a, "id": k} for k, a in enumerate(anns, start=1)]
    return out, problems


# -- vtk convert -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """``vtk convert {voc,yolo,coco} ... --out FILE`` (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="vtk convert",
        description=_plain(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="format", required=True)
    voc = sub.add_parser("voc", help="Pascal VOC XML folder(s) -> COCO JSON")
    voc.add_argument("roots", type=Path, nargs="*", metavar="root", help="VOC folder(s)")
    voc.add_argument("--annotations", type=Path, help="a folder of XML files (another layout)")
    voc.add_argument("--images", type=Path, help="the folder of their images (with --annotations)")
    voc.add_argument(
        "--split",
        help="a list in ImageSets/Main (train, val, ...) or a .txt / .csv list file; "
        "default every XML",
    )
    voc.add_argument("--val_fraction", type=float, help="carve val out (seeded); --out: a folder")
    voc.add_argument("--test_fraction", type=float, help="carve test out too")
    voc.add_argument("--seed", type=int, default=0, help="of the fractions (default 0)")
    voc.add_argument("--classes", help="comma-separated class names, in the order of their ids")
    voc.add_argument("--difficult", choices=["crowd", "keep", "drop"], default="crowd")
    yolo = sub.add_parser("yolo", help="a YOLO export (data.yaml + txt labels) -> COCO JSON")
    yolo.add_argument("data_yaml", type=Path)
    yolo.add_argument("--split", default="train", help="train, val or test (default train)")
    coco = sub.add_parser("coco", help="a COCO JSON with annotation ids renumbered from 1")
    coco.add_argument("file", type=Path)
    for p in (voc, yolo, coco):
        p.add_argument("--out", type=Path, required=True, help="the COCO JSON to write")
    args = parser.parse_args(argv)
    try:
        if args.format == "voc":
            classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
            if args.annotations or args.images or args.val_fraction or args.test_fraction:
                _voc_folders(args, classes)
                return
            if not args.roots:
                raise DataError("give VOC folder(s), or --annotations DIR --images DIR.")
            data, problems = voc_to_coco(args.roots, args.split, classes, args.difficult)
            folder: Path | None = voc_image_folder(args.roots)
        elif args.format == "yolo":
            data, problems, folder = yolo_to_coco(args.data_yaml, args.split)
        else:
            if not args.file.is_file():
                raise DataError(f"{args.file} does not exist.")
            try:
                raw = json.loads(args.file.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{args.file} is not JSON: {e}") from None
            data, problems = renumber_annotations(raw)
            folder = None
    except DataError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    _write(args.out, data, problems, folder)


def _write(out: Path, data: Coco, problems: list[str], folder: Path | None) -> None:
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    names = ", ".join(str(c.get("name")) for c in data.get("categories", [])[:20])
    print(
        f"wrote {out}: {len(data.get('images', []))} images, "
        f"{len(data['annotations'])} boxes, {len(data.get('categories', []))} categories "
        f"({names})" + (f"; image folder: {folder}" if folder is not None else "")
    )


def _voc_folders(args: argparse.Namespace, classes: list[str] | None) -> None:
    """``vtk convert voc --annotations DIR --images DIR [--split FILE | --val_fraction F]``;
    VOC roots with fractions take their root's Annotations/ and JPEGImages/."""
    if args.roots:
        if len(args.roots) > 1 or args.annotations or args.images:
            raise DataError("with --val_fraction, give one VOC folder or --annotations/--images.")
        args.annotations = _child(args.roots[0], "Annotations")
        args.images = _child(args.roots[0], "JPEGImages")
    if not (args.annotations and args.images):
        raise DataError("give both --annotations DIR (the XML files) and --images DIR.")
    fractions = (args.val_fraction, args.test_fraction)
    for name, value in zip(("val_fraction", "test_fraction"), fractions):
        if value is not None and not 0.0 < value < 1.0:
            raise DataError(f"--{name} is a fraction in (0, 1), got {value}.")
    if any(fractions) and args.out.suffix.lower() == ".json":
        raise DataError(
            f"--out {args.out}: with --val_fraction / --test_fraction, --out is a folder "
            "(train.json, val.json and test.json go in it)."
        )
    files, problems = voc_folders_to_coco(
        args.annotations, args.images, args.split, classes, args.difficult, fractions, args.seed
    )
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    for role, data in files.items():
        out = args.out if role == "all" else args.out / f"{role}.json"
        _write(out, data, [], args.images)
    if any(fractions):
        counts = ", ".join(f"{len(d['images'])} {r}" for r, d in files.items())
        print(f"split (val_fraction {args.val_fraction}, test_fraction {args.test_fraction}, "
              f"seed {args.seed}): {counts}")  # fmt: skip


def _plain(doc: str) -> str:
    """A docstring for --help: without reStructuredText's markup (``x``, **x**, :class:`~a.X`)."""
    import re

    doc = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", doc)
    return doc.replace("``", "").replace("**", "")
