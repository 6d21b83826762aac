"""The datasets every vtk DataModule builds on: samples whose image is a file, read as real
files come (any mode, EXIF applied), with the bad-image policy; the prediction folder and its
batch schema. (Also importable from :mod:`vtk.data.base`.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from vtk.data.io import IMAGE_SUFFIXES, is_image_file, read_image
from vtk.errors import DataError

log = logging.getLogger("vtk")

OnBadImage = Literal["error", "skip"]


def load_image(
    path: str | Path,
    on_bad_image: OnBadImage,
    fit: tuple[int, int] | None = None,
    exif: bool = True,
) -> np.ndarray | None:
    """The image as ``(H, W, 3)`` uint8 RGB; one that cannot be decoded stops the run with its
    path (``"error"``) or is logged by path and left out (``"skip"``: None). ``fit``: JPEG
    draft decoding (:func:`vtk.data.io.open_image`)."""
    try:
        return read_image(path, fit, exif)
    except DataError as e:
        if on_bad_image == "error":
            raise DataError(f"{e} (set on_bad_image: skip to leave such images out)") from None
        log.warning("skipping an image that cannot be decoded: %s", e)
        return None


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (sorted); other files are listed in a warning."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"prediction folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    others = [p.name for p in files if not is_image_file(p)]
    if others:
        log.warning(
            "skipping %d files that are not images in %s: %s", len(others), folder, others[:5]
        )
    images = [p for p in files if is_image_file(p)]
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    return images


def predict_item(image: np.ndarray, transform: Any, id: str, path: str) -> dict[str, Any]:
    """One image as a prediction sample (the batch schema of every task's ``predict_step``)."""
    return {
        "image": transform(image=image)["image"],
        "id": id,
        "path": path,
        "size": tuple(image.shape[:2]),
    }


class ImageFileDataset(Dataset):
    """Samples whose image is a file, through an albumentations pipeline.

    An image that cannot be decoded stops the run, naming it, or with ``on_bad_image="skip"``
    is logged and left out of its batch (the item is None; the collate functions drop it).
    Subclasses say where a sample's image is (:meth:`image_path`) and what an item holds
    (:meth:`item`).
    """

    def __init__(
        self, samples: Sequence[Any], transform: Any, on_bad_image: OnBadImage = "error"
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.on_bad_image = on_bad_image
        #: (shorter side, longer-side cap) to decode JPEGs at (draft mode), or None: whole
        self.decode_fit: tuple[int, int] | None = None
        #: turn images upright as their EXIF orientation says (the data's exif_orientation)
        self.exif = True

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = self.samples[index]
        image = load_image(self.image_path(sample), self.on_bad_image, self.decode_fit, self.exif)
        return None if image is None else self.item(sample, image)

    def image_path(self, sample: Any) -> Path:
        return sample.path

    def item(self, sample: Any, image: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError


class PredictDataset(ImageFileDataset):
    """Image files through an evaluation pipeline, for prediction (unreadable ones reported)."""

    def __init__(self, files: Sequence[Path], transform: Any) -> None:
        super().__init__(files, transform, on_bad_image="skip")

    def image_path(self, sample: Path) -> Path:
        return sample

    def item(self, sample: Path, image: np.ndarray) -> dict[str, Any]:
        return predict_item(image, self.transform, sample.stem, str(sample))


def list_collate(batch: list[dict[str, Any] | None]) -> dict[str, list[Any]] | None:
    """Samples as lists per key (images may differ in size); unreadable ones (None) left out."""
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return {key: [b[key] for b in kept] for key in kept[0]}
