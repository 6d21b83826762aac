"""DRIVE as it is distributed (TIFF images, GIF labels of 0/255, field-of-view GIFs), written
small here: the field of view's outside is ignored, validation is carved from the training
images, an epoch lists each training image train_repeats times, a missing label is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtk.data import DRIVEDataModule
from vtk.errors import DataError


def write_drive(root: Path, train: int = 5, test: int = 2, h: int = 40, w: int = 48) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    fov = (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 < 0.9).astype(np.uint8)
    for folder, numbers, kind in (("training", range(21, 21 + train), "training"),
                                  ("testing", range(1, 1 + test), "test")):  # fmt: skip
        for sub in ("images", "1st_manual", "mask"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            name = f"{n:02d}_{kind}"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                root / folder / "images" / f"{name}.tif"
            )
            vessels = np.zeros((h, w), np.uint8)
            vessels[:, w // 2 - 1 : w // 2 + 1] = 255  # a vertical vessel
            vessels[0, :] = 255  # a line on the top edge, outside the field of view
            Image.fromarray(vessels).save(root / folder / "1st_manual" / f"{n:02d}_manual1.gif")
            Image.fromarray(fov * 255).save(root / folder / "mask" / f"{name}_mask.gif")
    return root


def _data(root: Path, **kwargs) -> DRIVEDataModule:
    return DRIVEDataModule(root=str(root), crop_size=32, batch_size=2, num_workers=0, **kwargs)


def test_labels_inside_the_field_of_view_and_255_outside(tmp_path) -> None:
    data = _data(write_drive(tmp_path / "DRIVE"))
    data.setup("test")
    item = data.datasets["test"][0]
    mask = item["mask"].numpy()
    assert item["id"] == "01_test" and mask.shape == (40, 48)
    assert set(np.unique(mask)) == {0, 1, 255}
    assert (mask[0] == 255).all()  # the top edge is outside the field of view: not scored
    assert (mask[20, 23:25] == 1).all() and mask[20, 10] == 0
    assert data.class_names == ["background", "vessel"]


def test_validation_is_carved_and_training_images_repeat(tmp_path) -> None:
    data = _data(write_drive(tmp_path / "DRIVE", train=10), train_repeats=3)
    data.setup("fit")
    train = [s.id for s in data.datasets["train"].samples]
    val = [s.id for s in data.datasets["val"].samples]
    assert len(val) == 2 and len(train) == 8 * 3  # val_fraction 0.2 by default
    assert set(train).isdisjoint(val) and all(train.count(i) == 3 for i in set(train))
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)


def test_a_palette_gif_label_of_0_and_1_reads_as_vessels(tmp_path) -> None:
    """DRIVE's second-observer GIFs are palette images of indices 0 and 1 (black, white)."""
    root = write_drive(tmp_path / "DRIVE", train=1, test=1)
    path = root / "testing" / "1st_manual" / "01_manual1.gif"
    grey = np.asarray(Image.open(path))
    palette = Image.fromarray((grey > 0).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.save(path)
    data = _data(root)
    data.setup("test")
    assert (data.datasets["test"][0]["mask"].numpy()[20, 23:25] == 1).all()


def test_a_missing_label_is_named(tmp_path) -> None:
    root = write_drive(tmp_path / "DRIVE")
    (root / "training" / "1st_manual" / "22_manual1.gif").unlink()
    with pytest.raises(DataError, match=r"22_manual1.gif"):
        _data(root).setup("fit")
    with pytest.raises(DataError, match="DRIVE not found"):
        _data(tmp_path / "nowhere").setup("fit")
