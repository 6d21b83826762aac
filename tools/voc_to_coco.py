"""Convert Pascal VOC XML annotations to a COCO JSON file.

    python tools/voc_to_coco.py BCCD --split train --out data/bccd/train.json
    python tools/voc_to_coco.py VOCdevkit/VOC2012 --split val --classes aeroplane,bicycle,... --out val.json
    python tools/voc_to_coco.py VOCdevkit/VOC2007 VOCdevkit/VOC2012 --split trainval --out voc0712.json

Reads ``ROOT/ImageSets/Main/<split>.txt`` (or every XML of ``ROOT/Annotations`` without
``--split``) and ``ROOT/Annotations/<id>.xml`` of each ROOT, and writes one COCO annotation
file. With one ROOT, ``file_name`` entries are relative to ``ROOT/JPEGImages`` (pass that folder
as the image folder); with several, relative to their common parent folder (pass that one:
``VOC2007/JPEGImages/000005.jpg``), and the image folder to use is printed.

* VOC's 1-based pixel coordinates become COCO's 0-based boxes (``x = xmin - 1``, ``width =
  xmax - xmin + 1``), as detectron2's VOC reader does.
* Categories: ``--classes`` in that order (ids 1..K), or the sorted names found.
* ``difficult`` objects (VOC's evaluation ignores them): ``--difficult crowd`` (default) writes
  them with ``iscrowd: 1`` so training leaves them out and COCO evaluation does not count them
  as misses; ``keep`` writes them as ordinary boxes; ``drop`` leaves them out.
* Boxes with no area (``xmax <= xmin`` happens in real files) are reported with their file and
  left out; images without objects are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def _number(node: ET.Element, tag: str, xml: Path) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise SystemExit(f"{xml}: <{tag}> is missing")
    return float(child.text)


def image_folder(roots: list[Path]) -> Path:
    """The folder the written ``file_name`` entries are relative to."""
    if len(roots) == 1:
        return roots[0] / "JPEGImages"
    return Path(os.path.commonpath([r.resolve() for r in roots]))


def _ids(root: Path, split: str | None) -> list[str]:
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir():
        raise SystemExit(
            f"{annotations_dir} does not exist: ROOT must be a VOC folder (Annotations/, JPEGImages/)."
        )
    if split is None:
        return sorted(p.stem for p in annotations_dir.glob("*.xml"))
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise SystemExit(f"{split_file} does not exist.")
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


def convert(
    roots: Path | list[Path], split: str | None, classes: list[str] | None, difficult: str
) -> tuple[dict[str, Any], list[str]]:
    """The COCO dict and the problems found (one line each)."""
    roots = [roots] if isinstance(roots, Path) else list(roots)
    folder = image_folder(roots)
    parsed, problems = [], []
    for root in roots:
        prefix = "" if len(roots) == 1 else f"{root.resolve().relative_to(folder)}/JPEGImages/"
        for i, filename, w, h, objects in _parse(root, _ids(root, split), problems):
            parsed.append((i, prefix + filename, w, h, objects))
    return _build(parsed, classes, difficult, problems)


def _parse(root: Path, ids: list[str], problems: list[str]) -> list:
    """(id, file name, width, height, [(class, difficult, box)]) of each listed XML."""
    parsed = []
    for i in ids:
        xml = root / "Annotations" / f"{i}.xml"
        if not xml.is_file():
            raise SystemExit(f"{xml} (listed in the split) does not exist.")
        tree = ET.parse(xml).getroot()
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
        parsed.append((i, filename, w, h, objects))
    return parsed


def _build(parsed: list, classes: list[str] | None, difficult: str, problems: list[str]):
    names = classes or sorted({name for *_, objects in parsed for name, _, _ in objects})
    category = {name: k + 1 for k, name in enumerate(names)}
    images, anns = [], []
    for image_id, (i, filename, w, h, objects) in enumerate(parsed, start=1):
        image = {"id": image_id, "file_name": filename}
        if w and h:
            image.update(width=w, height=h)
        images.append(image)
        for name, hard, (x1, y1, x2, y2) in objects:
            if name not in category:
                problems.append(f"{i}: class {name!r} is not in --classes, left out")
                continue
            if hard and difficult == "drop":
                continue
            if x2 <= x1 or y2 <= y1:
                problems.append(
                    f"{i}.xml: {name} box ({x1}, {y1}, {x2}, {y2}) has no area, left out"
                )
                continue
            bw, bh = x2 - x1 + 1, y2 - y1 + 1
            anns.append(
                {"id": len(anns) + 1, "image_id": image_id, "category_id": category[name], "bbox": [x1 - 1, y1 - 1, bw, bh],
                 "area": bw * bh, "iscrowd": int(bool(hard) and difficult == "crowd")}
            )  # fmt: skip
    categories = [{"id": k, "name": name, "supercategory": "none"} for name, k in category.items()]
    return {"images": images, "annotations": anns, "categories": categories}, problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "roots", type=Path, nargs="+", metavar="root",
        help="VOC folder(s) holding Annotations/ (and ImageSets/Main/)",
    )  # fmt: skip
    parser.add_argument(
        "--split", help="a list in ImageSets/Main (train, val, ...); default every XML"
    )
    parser.add_argument("--classes", help="comma-separated class names, in the order of their ids")
    parser.add_argument("--difficult", choices=["crowd", "keep", "drop"], default="crowd")
    parser.add_argument("--out", type=Path, required=True, help="the COCO JSON to write")
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    coco, problems = convert(args.roots, args.split, classes, args.difficult)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(coco))
    print(
        f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
        f"{len(coco['categories'])} categories ({', '.join(c['name'] for c in coco['categories'])}); "
        f"image folder: {image_folder(args.roots)}"
    )


if __name__ == "__main__":
    main()
