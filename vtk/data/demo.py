"""Embedded demo data: small synthetic datasets written on first use, in the real formats.

Nothing is downloaded. The generator is deterministic (one seed), so every machine gets the
same files and the README's figures can be reproduced. Data goes to ``$VTK_DATA_DIR``
(default ``~/.cache/vtk``).

The classification demo draws one circle, square, triangle or star per image, in any colour,
and writes them as an image folder (``train/<class>/*.png``, ``val/<class>/*.png``).

The detection demo draws one to five circles, squares and triangles per image (each class with a
typical hue) and writes COCO JSON annotations (``annotations/{train,val}.json`` beside
``train/`` and ``val/`` image folders).

The segmentation demo draws circles, squares and triangles on textured backgrounds and writes
them in the Pascal VOC layout (JPEG images, palette PNG masks with a 255 "ignore" border around
each object, as VOC has). Each class has a typical hue with wide jitter, so a network must use
shape as well as colour.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vtk.data.classification import ClassificationDataModule, class_folders, image_folder_samples
from vtk.data.detection import CocoDetectionDataModule
from vtk.data.segmentation import Sample, SegmentationDataModule, voc_samples
from vtk.drawing import voc_palette
from vtk.spec import IGNORE_INDEX

DEMO_SEGMENTATION_CLASSES = ("background", "circle", "square", "triangle")
DEMO_CLASSIFICATION_CLASSES = ("circle", "square", "star", "triangle")
DEMO_DETECTION_CLASSES = ("circle", "square", "triangle")
#: what ``vtk test`` of a demo evaluates (logged)
DEMO_TEST = "the validation images (the demo sets have no test split)"


def data_dir() -> Path:
    """Where generated demo data lives: ``$VTK_DATA_DIR`` or ``~/.cache/vtk``."""
    return Path(os.environ.get("VTK_DATA_DIR", "~/.cache/vtk")).expanduser()


def _polygon(shape: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    corners = 4 if shape == 2 else 3
    return [
        (
            cx + r * math.cos(angle + 2 * math.pi * k / corners),
            cy + r * math.sin(angle + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A muted two-colour gradient plus noise."""
    c0, c1 = rng.uniform(40, 200, size=(2, 3))
    tx = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0.3, 1)
    ty = np.linspace(0, 1, h)[:, None, None] * rng.uniform(0, 0.7)
    t = np.clip(tx + ty, 0, 1)
    pixels = c0 * (1 - t) + c1 * t + rng.normal(0, 8, size=(h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_atomically(root: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a temporary folder and rename it to ``root``, so processes that
    start together (DDP ranks) never see half a dataset."""
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _draw_sample(rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    h, w = (int(v) for v in rng.integers(96, 129, size=2))
    image = _background(rng, h, w)
    mask = Image.new("L", (w, h), 0)
    draw_i, draw_m = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 5))):
        shape = int(rng.integers(1, 4))
        r = float(rng.uniform(10, 28))
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        hue = ((shape - 1) / 3 + rng.uniform(-0.11, 0.11)) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1), rng.uniform(0.55, 1))
        colour = tuple(int(255 * c) for c in rgb)
        if shape == 1:
            box = [cx - r, cy - r, cx + r, cy + r]
            draw_i.ellipse(box, fill=colour)
            draw_m.ellipse(box, fill=shape, outline=IGNORE_INDEX, width=1)
        else:
            pts = _polygon(
                shape, cx, cy, r * (1.25 if shape == 3 else 1.1), float(rng.uniform(0, math.pi))
            )
            draw_i.polygon(pts, fill=colour)
            draw_m.polygon(pts, fill=shape, outline=IGNORE_INDEX, width=1)
    mask.putpalette(voc_palette())  # "L" -> "P": the values stay the class indices
    return image, mask


def make_demo_segmentation(
    root: str | Path, num_train: int = 400, num_val: int = 51, seed: int = 0
) -> Path:
    """Write the demo segmentation set in the VOC layout under ``root`` unless it is there."""
    root = Path(root).expanduser()
    if (root / "ImageSets" / "Segmentation" / "val.txt").is_file():
        return root

    def write(tmp: Path) -> None:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (tmp / sub).mkdir(parents=True)
        rng = np.random.default_rng(seed)
        index = 0
        for split, n in {"train": num_train, "val": num_val}.items():
            ids = []
            for _ in range(n):
                sample_id = f"demo_{index:06d}"
                image, mask = _draw_sample(rng)
                image.save(tmp / "JPEGImages" / f"{sample_id}.jpg", quality=95)
                mask.save(tmp / "SegmentationClass" / f"{sample_id}.png")
                ids.append(sample_id)
                index += 1
            (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")

    return _write_atomically(root, write)


def _star(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    return [
        (cx + (r if k % 2 == 0 else 0.45 * r) * math.cos(angle + math.pi * k / 5),
         cy + (r if k % 2 == 0 else 0.45 * r) * math.sin(angle + math.pi * k / 5))
        for k in range(10)
    ]  # fmt: skip


def make_demo_classification(
    root: str | Path, num_train: int = 400, num_val: int = 50, seed: int = 0
) -> Path:
    """Write the demo classification set (``num_train`` / ``num_val`` images per class, 64x64 PNG)
    as an image folder under ``root`` unless it is there."""
    root = Path(root).expanduser()
    if (root / "val").is_dir():
        return root

    def write(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for split, n in (("train", num_train), ("val", num_val)):
            for label, name in enumerate(DEMO_CLASSIFICATION_CLASSES):
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for i in range(n):
                    image = _background(rng, 64, 64)
                    draw = ImageDraw.Draw(image)
                    r = float(rng.uniform(14, 24))
                    cx, cy = (float(v) for v in rng.uniform(r + 2, 62 - r, size=2))
                    colour = tuple(
                        int(255 * c)
                        for c in colorsys.hsv_to_rgb(
                            rng.uniform(), rng.uniform(0.5, 1), rng.uniform(0.6, 1)
                        )
                    )
                    angle = float(rng.uniform(0, 2 * math.pi))
                    if name == "circle":
                        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
                    elif name == "star":
                        draw.polygon(_star(cx, cy, r * 1.15, angle), fill=colour)
                    else:
                        draw.polygon(
                            _polygon(2 if name == "square" else 3, cx, cy, r * 1.1, angle),
                            fill=colour,
                        )
                    image.save(folder / f"{split}_{label}_{i:04d}.png")

    return _write_atomically(root, write)


class DemoSegmentationDataModule(SegmentationDataModule):
    """The synthetic shapes set (4 classes), generated on first use; VOC layout on disk.

    Args:
        root: where to write it (default ``$VTK_DATA_DIR/demo_segmentation``).
        binary: every shape is one foreground class, ``shape`` (two classes: the demo of
            :class:`~vtk.tasks.BinarySegmentationTask`).
        **kwargs: see :class:`~vtk.data.segmentation.SegmentationDataModule`.
    """

    def __init__(self, root: str | None = None, binary: bool = False, **kwargs: Any) -> None:
        if binary:
            kwargs["label_map"] = {k: 1 for k in range(1, len(DEMO_SEGMENTATION_CLASSES))}
        names = ("background", "shape") if binary else DEMO_SEGMENTATION_CLASSES
        super().__init__(num_classes=len(names), class_names=names, **kwargs)
        self.root = Path(root).expanduser() if root else data_dir() / "demo_segmentation"

    def prepare_data(self) -> None:
        make_demo_segmentation(self.root)

    def setup(self, stage: str) -> None:
        make_demo_segmentation(self.root)  # a no-op once prepare_data has run
        super().setup(stage)

    def samples(self, split: str) -> list[Sample]:
        return voc_samples(self.root, "train" if split == "train" else "val")

    classes_from = "the demo set (its shapes)"

    def test_source(self) -> str:
        return DEMO_TEST


class DemoClassificationDataModule(ClassificationDataModule):
    """The synthetic shapes classification set (4 classes, 64x64), generated on first use.

    On disk it is an image folder (``train/<class>``, ``val/<class>``), read as
    :class:`~vtk.data.classification.ImageFolderDataModule` reads one.

    Args:
        root: where to write it (default ``$VTK_DATA_DIR/demo_classification``).
        image_size, resize_size: 64 (the images' size).
        **kwargs: see :class:`~vtk.data.classification.ClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        resize_size: int | None = 64,
        **kwargs: Any,
    ) -> None:
        # generated here, not in prepare_data: the class folders give num_classes at construction
        self.root = make_demo_classification(
            Path(root).expanduser() if root else data_dir() / "demo_classification"
        )
        names = class_folders(self.root / "train")
        super().__init__(
            num_classes=len(names),
            class_names=names,
            image_size=image_size,
            resize_size=resize_size,
            **kwargs,
        )

    classes_from = "the demo set (its shapes)"

    def test_source(self) -> str:
        return DEMO_TEST

    def make_dataset(self, split: str) -> Any:
        folder = self.root / ("train" if split == "train" else "val")
        samples = self.carve(
            split, lambda s: image_folder_samples(self.root / ("train" if s == "train" else "val"),
                                                  self.class_names),
            key=lambda sample: str(sample.path), label=lambda sample: sample.label,
        )  # fmt: skip
        return self.files_dataset(samples, split, str(folder))


def make_demo_detection(
    root: str | Path, num_train: int = 400, num_val: int = 101, seed: int = 0
) -> Path:
    """Write the demo detection set (128x128 JPEGs, COCO JSON) under ``root`` unless it is there."""
    root = Path(root).expanduser()
    if (root / "annotations" / "val.json").is_file():
        return root

    def write(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        categories = [
            {"id": i + 1, "name": n, "supercategory": "shape"}
            for i, n in enumerate(DEMO_DETECTION_CLASSES)
        ]
        (tmp / "annotations").mkdir(parents=True)
        image_id = ann_id = 0
        for split, n in (("train", num_train), ("val", num_val)):
            (tmp / split).mkdir()
            images, annotations = [], []
            for _ in range(n):
                image_id += 1
                image = _background(rng, 128, 128)
                draw = ImageDraw.Draw(image)
                for _ in range(int(rng.integers(1, 6))):
                    shape = int(rng.integers(1, 4))
                    r = float(rng.uniform(8, 24))
                    cx, cy = (float(v) for v in rng.uniform(r, 128 - r, size=2))
                    hue = ((shape - 1) / 3 + rng.uniform(-0.08, 0.08)) % 1.0
                    colour = tuple(
                        int(255 * c)
                        for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1), rng.uniform(0.6, 1))
                    )
                    if shape == 1:
                        pts = [(cx - r, cy - r), (cx + r, cy + r)]
                        draw.ellipse(pts, fill=colour)
                        area = math.pi * r * r
                    else:
                        pts = _polygon(
                            shape,
                            cx,
                            cy,
                            r * (1.25 if shape == 3 else 1.1),
                            float(rng.uniform(0, math.pi)),
                        )
                        draw.polygon(pts, fill=colour)
                        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                        area = 0.5 * abs(
                            sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(pts)))
                        )
                    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                    x1, y1 = max(min(xs), 0.0), max(min(ys), 0.0)
                    x2, y2 = min(max(xs), 128.0), min(max(ys), 128.0)
                    ann_id += 1
                    annotations.append(
                        {"id": ann_id, "image_id": image_id, "category_id": shape, "iscrowd": 0, "area": round(area, 2),
                         "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]}
                    )  # fmt: skip
                name = f"{split}_{image_id:05d}.jpg"
                image.save(tmp / split / name, quality=95)
                images.append({"id": image_id, "file_name": name, "width": 128, "height": 128})
            coco = {"images": images, "annotations": annotations, "categories": categories}
            (tmp / "annotations" / f"{split}.json").write_text(json.dumps(coco))

    return _write_atomically(root, write)


class DemoDetectionDataModule(CocoDetectionDataModule):
    """The synthetic shapes detection set (3 classes, 128x128, COCO JSON), generated on first use.

    Args:
        root: where to write it (default ``$VTK_DATA_DIR/demo_detection``).
        **kwargs: see :class:`~vtk.data.detection.CocoDetectionDataModule`.
    """

    def __init__(self, root: str | None = None, **kwargs: Any) -> None:
        folder = make_demo_detection(
            Path(root).expanduser() if root else data_dir() / "demo_detection"
        )
        super().__init__(
            train_images=str(folder / "train"),
            train_annotations=str(folder / "annotations" / "train.json"),
            val_images=str(folder / "val"),
            val_annotations=str(folder / "annotations" / "val.json"),
            test_annotations=str(folder / "annotations" / "val.json"),
            **kwargs,
        )

    classes_from = "the demo set (its shapes)"

    def test_source(self) -> str:
        return DEMO_TEST
