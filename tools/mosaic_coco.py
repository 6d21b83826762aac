"""Make a large-image detection set from a COCO-format one: 2x2 (or n x n) mosaics of its
images, boxes carried, as one COCO JSON. What sliced detection is measured on
(docs/detection.md: "Large images"): the objects keep their pixel size while the image grows,
so a detector that resizes the whole image shrinks them.

    python tools/mosaic_coco.py --images BCCD/JPEGImages --annotations test.json --out mosaics
    # -> mosaics/images/*.jpg and mosaics/annotations.json

Images are taken in file order, ``n * n`` per mosaic, each pasted at its own size into a cell of
the largest image's size (the rest of a cell stays black); a last incomplete group is left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image


def make_mosaics(images: Path, annotations: Path, out: Path, n: int = 2) -> dict:
    coco = json.loads(annotations.read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    entries = sorted(coco["images"], key=lambda i: i["file_name"])
    cell_w = max(i["width"] for i in entries)
    cell_h = max(i["height"] for i in entries)
    (out / "images").mkdir(parents=True, exist_ok=True)
    result: dict = {"images": [], "annotations": [], "categories": coco["categories"]}
    for m in range(len(entries) // (n * n)):
        canvas = Image.new("RGB", (cell_w * n, cell_h * n))
        name = f"mosaic_{m:04d}.jpg"
        for k, entry in enumerate(entries[m * n * n : (m + 1) * n * n]):
            x0, y0 = (k % n) * cell_w, (k // n) * cell_h
            with Image.open(images / entry["file_name"]) as im:
                canvas.paste(im.convert("RGB"), (x0, y0))
            for a in by_image.get(entry["id"], []):
                x, y, w, h = a["bbox"]
                result["annotations"].append(
                    {**a, "id": len(result["annotations"]) + 1, "image_id": m + 1,
                     "bbox": [x + x0, y + y0, w, h]}
                )  # fmt: skip
        canvas.save(out / "images" / name, quality=95)
        result["images"].append(
            {"id": m + 1, "file_name": name, "width": cell_w * n, "height": cell_h * n}
        )
    (out / "annotations.json").write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--images", type=Path, required=True, help="the COCO set's image folder")
    parser.add_argument("--annotations", type=Path, required=True, help="its COCO JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2, help="images per side of a mosaic")
    args = parser.parse_args()
    result = make_mosaics(args.images, args.annotations, args.out, args.n)
    print(f"wrote {len(result['images'])} mosaics with {len(result['annotations'])} boxes to "
          f"{args.out} (images/, annotations.json)")  # fmt: skip


if __name__ == "__main__":
    main()
