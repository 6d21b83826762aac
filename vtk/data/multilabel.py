"""Multi-label classification data: each image has any number of the classes.

:class:`MultiLabelDataModule` reads the labels from a CSV (``image,labels`` with the labels
separated by ``;``: ``beach.jpg,sea;sky;person``) or from a COCO file (an image's labels are the
categories of its boxes), with the image folder beside it. Items are
``{"image", "label": (K,) float multi-hot, "id", "path"}``; the classes are the training split's
(sorted names from a CSV, the categories of a COCO file).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vtk.data.base import ImageFileDataset
from vtk.data.classification import ClassificationDataModule
from vtk.drawing import draw_classes
from vtk.errors import ConfigError, DataError

log = logging.getLogger("vtk")


@dataclass(frozen=True)
class MultiLabelSample:
    id: str
    path: Path
    labels: tuple[int, ...]


class MultiLabelDataset(ImageFileDataset):
    """Image files with their classes as a multi-hot vector."""

    def __init__(self, samples: Sequence[MultiLabelSample], num_classes: int, transform: Any,
                 on_bad_image: Any = "error") -> None:  # fmt: skip
        super().__init__(samples, transform, on_bad_image)
        self.num_classes = num_classes

    def item(self, sample: MultiLabelSample, image: np.ndarray) -> dict[str, Any]:
        target = torch.zeros(self.num_classes)
        target[list(sample.labels)] = 1.0
        return {"image": self.transform(image=image)["image"], "label": target,
                "id": sample.id, "path": str(sample.path)}  # fmt: skip


def csv_samples(
    path: Path, images: Path, names: list[str] | None, sep: str
) -> tuple[list[MultiLabelSample], list[str]]:
    """Samples of an ``image,labels`` CSV (a header row is recognised), and the class names
    (given, or the sorted names the file uses)."""
    if not path.is_file():
        raise DataError(f"label file {path} does not exist.")
    rows = []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or (
                n == 1 and row[0].strip().lower() in ("image", "file", "filename", "path")
            ):
                continue
            if len(row) < 2:
                raise DataError(f"{path}, line {n}: expected 'image,labels', got {row!r}.")
            rows.append((n, row[0].strip(), [s.strip() for s in row[1].split(sep) if s.strip()]))
    found = sorted({label for _, _, labels in rows for label in labels})
    classes = list(names) if names is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        line = next(n for n, _, labels in rows if set(labels) & set(unknown))
        raise DataError(
            f"{path}, line {line}: labels {unknown[:5]} are not among the classes {classes[:10]}."
        )
    index = {c: i for i, c in enumerate(classes)}
    samples = [MultiLabelSample(Path(name).stem, images / name, tuple(sorted({index[x] for x in labels})))
               for _, name, labels in rows]  # fmt: skip
    return samples, classes


def coco_samples(
    path: Path, images: Path, names: list[str] | None
) -> tuple[list[MultiLabelSample], list[str]]:
    """Samples of a COCO file: an image's labels are the categories of its boxes."""
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist.")
    data = json.loads(path.read_text())
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    classes = [str(c["name"]) for c in categories]
    if names is not None and list(names) != classes:
        raise DataError(
            f"the categories of {path} ({classes[:10]}) differ from the training split's ({list(names)[:10]})."
        )
    index = {c["id"]: i for i, c in enumerate(categories)}
    labels: dict[int, set[int]] = {}
    for a in data.get("annotations", []):
        labels.setdefault(a["image_id"], set()).add(index[a["category_id"]])
    samples = [MultiLabelSample(Path(i["file_name"]).stem, images / i["file_name"],
                                tuple(sorted(labels.get(i["id"], ())))) for i in data["images"]]  # fmt: skip
    return samples, classes


class MultiLabelDataModule(ClassificationDataModule):
    """Multi-label classification data from a CSV or a COCO file per split (see the module).

    Args:
        train_labels, val_labels, test_labels: each split's ``.csv`` (``image,labels``) or
            ``.json`` (COCO) file; ``test_labels`` optional.
        train_images, val_images, test_images: the image folders (default: the label file's).
        separator: between the labels of a CSV row.
        **kwargs: see :class:`~vtk.data.classification.ClassificationDataModule` (sizes,
            augmentation, ``val_fraction``).
    """

    classes_from = "the training label file (its label names, or its COCO categories)"
    test_option = "--data.test_labels FILE"

    def __init__(
        self,
        train_labels: str,
        val_labels: str | None = None,
        test_labels: str | None = None,
        train_images: str | None = None,
        val_images: str | None = None,
        test_images: str | None = None,
        separator: str = ";",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("mixup_alpha") or kwargs.get("cutmix_alpha"):
            raise ConfigError(
                "mixup_alpha / cutmix_alpha mix single-label targets; multi-label data takes "
                "neither (leave them out)."
            )
        self.files = {"train": train_labels, "val": val_labels, "test": test_labels}
        self.folders = {"train": train_images, "val": val_images or train_images,
                        "test": test_images or val_images or train_images}  # fmt: skip
        self.separator = separator
        if kwargs.get("stream") is not None:  # the stream holds the classes and the samples
            self.stream, self.stream_cache = kwargs["stream"], kwargs.get("stream_cache")
            self.stream_options = kwargs.get("stream_options")
            names = self.stream_facts()["class_names"]
        else:
            _, names = self._read("train", None)
        super().__init__(num_classes=len(names), class_names=names, **kwargs)

    def _read(
        self, split: str, names: list[str] | None
    ) -> tuple[list[MultiLabelSample], list[str]]:
        file = self.files[split]
        if file is None:
            raise DataError(
                f"no {split} labels: give --data.{split}_labels FILE, or --data.{split}_fraction F."
            )
        path = Path(file).expanduser()
        folder = Path(self.folders[split]).expanduser() if self.folders[split] else path.parent
        if path.suffix.lower() == ".json":
            return coco_samples(path, folder, names)
        return csv_samples(path, folder, names, self.separator)

    def test_source(self) -> str | None:
        return None if self.files["test"] is None else ""

    def make_dataset(self, split: str) -> Dataset:
        samples = self.carve(split, lambda s: self._read(s, self.class_names)[0],
                             key=lambda sample: str(sample.path))  # fmt: skip
        missing = [] if self.stream else [s.path for s in samples if not s.path.is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} images of the {split} labels do not exist, e.g. {missing[0]}."
            )
        return MultiLabelDataset(
            samples, self.num_classes, self.transform(split), self.on_bad_image
        )

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        from vtk.data import transforms as T

        image = T.to_uint8(item["image"], self.eval_spec())
        names = [self.class_names[i] for i in torch.nonzero(item["label"]).flatten().tolist()]
        return draw_classes(image, names, [1.0] * len(names))


class DemoMultiLabelDataModule(MultiLabelDataModule):
    """The demo detection set (128x128 shapes, COCO) read as multi-label classification: which
    shapes each image holds (``vtk.data.DemoDetectionDataModule``'s files, written on first use)."""

    classes_from = "the demo set (its shapes)"

    def __init__(self, root: str | None = None, image_size: int = 128, resize_size: int | None = 128,
                 **kwargs: Any) -> None:  # fmt: skip
        from vtk.data.demo import data_dir, make_demo_detection

        folder = make_demo_detection(
            Path(root).expanduser() if root else data_dir() / "demo_detection"
        )
        super().__init__(
            train_labels=str(folder / "annotations" / "train.json"), train_images=str(folder / "train"),
            val_labels=str(folder / "annotations" / "val.json"), val_images=str(folder / "val"),
            image_size=image_size, resize_size=resize_size, scale=(0.5, 1.0), **kwargs,
        )  # fmt: skip

    def test_source(self) -> str:
        return "the validation images (the demo sets have no test split)"

    def make_dataset(self, split: str) -> Dataset:
        return super().make_dataset("val" if split == "test" else split)
