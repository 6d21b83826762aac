"""DRIVE, retinal vessels (Staal et al., IEEE TMI 2004), as it is distributed::

    ROOT/training/images/21_training.tif        ... 40_training.tif  (565x584 RGB)
    ROOT/training/1st_manual/21_manual1.gif     vessels 255, background 0
    ROOT/training/mask/21_training_mask.gif     field of view 255, outside 0
    ROOT/testing/images/01_test.tif             ... 20_test.tif
    ROOT/testing/1st_manual/01_manual1.gif      the first observer: what the literature scores
    ROOT/testing/mask/01_test_mask.gif

Two classes (background, vessel); pixels outside the field of view are ``ignore_index`` for
the loss and every metric, as the literature scores DRIVE. There is no validation split:
``val_fraction`` (default 0.2: 4 of the 20 training images) carves one, on which the binary
task chooses its threshold and the run its best checkpoint. ``train_repeats`` lists each
training image several times per epoch (a random crop each time), so an epoch is long enough
to be worth a validation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vtk.data.segmentation import Sample, SegmentationDataModule, SegmentationDataset
from vtk.errors import DataError

DRIVE_CLASSES = ("background", "vessel")

_HOWTO = (
    "Get DRIVE (training/ and testing/, each with images/, 1st_manual/ and mask/) and pass "
    "--data.root ROOT."
)


def drive_samples(root: str | Path, split: str) -> list[Sample]:
    """The image / first-observer / field-of-view triples of ``training`` or ``testing``."""
    folder = Path(root).expanduser() / ("training" if split == "train" else "testing")
    images = folder / "images"
    if not images.is_dir():
        raise DataError(f"DRIVE not found at {root}: no {images} folder. {_HOWTO}")
    samples, missing = [], []
    for image in sorted(images.glob("*.tif")):
        number = re.match(r"(\d+)_", image.name)
        if number is None:
            raise DataError(f"{image} is not named as DRIVE's images are (NN_training.tif).")
        n = number.group(1)
        mask = folder / "1st_manual" / f"{n}_manual1.gif"
        roi = folder / "mask" / f"{image.stem}_mask.gif"
        for path in (mask, roi):
            if not path.is_file():
                missing.append(str(path))
        samples.append(Sample(image.stem, image, mask, roi))
    if missing:
        raise DataError(
            f"{len(missing)} DRIVE label files are missing (e.g. {missing[0]}): each image needs "
            "its 1st_manual/NN_manual1.gif and mask/<image>_mask.gif."
        )
    if not samples:
        raise DataError(f"no .tif images in {images}. {_HOWTO}")
    return samples


class DRIVEDataModule(SegmentationDataModule):
    """DRIVE's 20 training and 20 test images (see the module docs).

    Args:
        root: the folder holding ``training/`` and ``testing/``.
        crop_size: the training crop (random, at full resolution unless ``scale_range`` says
            otherwise).
        train_repeats: each training image is listed this many times per epoch.
        val_fraction: the share of the training images held out for validation (seeded).
        **kwargs: see :class:`~vtk.data.segmentation.SegmentationDataModule` (``scale_range``,
            ``vflip``, ``rotate90``, ``photometric``, ``batch_size``, ...).
    """

    def __init__(
        self,
        root: str = "data/DRIVE",
        crop_size: int | tuple[int, int] = 256,
        train_repeats: int = 1,
        val_fraction: float | None = 0.2,
        **kwargs: Any,
    ) -> None:
        if train_repeats < 1:
            raise DataError(f"train_repeats must be 1 or more, got {train_repeats}.")
        self.root = root
        self.train_repeats = train_repeats
        super().__init__(
            num_classes=len(DRIVE_CLASSES), class_names=DRIVE_CLASSES, crop_size=crop_size,
            mask_threshold=128, val_fraction=val_fraction, **kwargs,
        )  # fmt: skip

    def samples(self, split: str) -> list[Sample]:
        return drive_samples(self.root, split)

    def make_dataset(self, split: str) -> SegmentationDataset:
        dataset = super().make_dataset(split)
        if split == "train" and self.train_repeats > 1 and self.stream is None:  # (as written)
            dataset.samples = dataset.samples * self.train_repeats
        return dataset
