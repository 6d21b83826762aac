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
  With several roots, ``file_name`` is relative to their common parent folder.
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

from vtk.data.io import is_image_file, upright_size
from vtk.errors import DataError

__all__ = ["main", "renumber_annotations", "voc_to_coco", "yolo_to_coco"]

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


def voc_image_folder(roots: list[Path]) -> Path:
    """The folder the ``file_name`` entries written by :func:`voc_to_coco` are relative to."""
    if len(roots) == 1:
        return roots[0] / "JPEGImages"
    return Path(os.path.commonpath([r.resolve() for r in roots]))


def _voc_ids(root: Path, split: str | None) -> list[str]:
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir():
        raise DataError(
            f"{annotations_dir} does not exist: a VOC folder holds Annotations/ and JPEGImages/."
        )
    if split is None:
        return sorted(p.stem for p in annotations_dir.glob("*.xml"))
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(f"{split_file} does not exist (leave out --split to take every XML).")
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


def _voc_parse(root: Path, ids: list[str], problems: list[str]) -> list:
    """(xml path, file name, width, height, [(class, difficult, box)]) of each listed XML."""
    parsed = []
    for i in ids:
        xml = root / "Annotations" / f"{i}.xml"
        if not xml.is_file():
            raise DataError(f"{xml} (listed in the split) does not exist.")
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as e:
            raise DataError(f"{xml} is not valid XML: {e}.") from None
        size = tree.find("size")
        filename = tree.findtext("filename") or f"{i}.jpg"
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
        prefix = "" if len(roots) == 1 else f"{root.resolve().relative_to(folder)}/JPEGImages/"
        for xml, filename, w, h, objects in _voc_parse(root, _voc_ids(root, split), problems):
            parsed.append((xml, prefix + filename, w, h, objects))
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
    return {"images": images, "annotations": anns, "categories": categories}, problems


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
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="format", required=True)
    voc = sub.add_parser("voc", help="Pascal VOC XML folder(s) -> COCO JSON")
    voc.add_argument("roots", type=Path, nargs="+", metavar="root", help="VOC folder(s)")
    voc.add_argument(
        "--split", help="a list in ImageSets/Main (train, val, ...); default every XML"
    )
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
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data))
    names = ", ".join(str(c.get("name")) for c in data.get("categories", [])[:20])
    print(
        f"wrote {args.out}: {len(data.get('images', []))} images, "
        f"{len(data['annotations'])} boxes, {len(data.get('categories', []))} categories "
        f"({names})" + (f"; image folder: {folder}" if folder is not None else "")
    )
