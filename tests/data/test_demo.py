"""The embedded demo data: deterministic, in the VOC layout, readable by the VOC reader."""

from __future__ import annotations

import hashlib

import numpy as np

from vtk.data.demo import (
    DEMO_SEGMENTATION_CLASSES,
    DemoSegmentationDataModule,
    make_demo_segmentation,
)
from vtk.data.io import read_mask
from vtk.data.segmentation import voc_samples


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_demo_segmentation_is_deterministic_voc(tmp_path) -> None:
    a = make_demo_segmentation(tmp_path / "a", num_train=4, num_val=3)
    b = make_demo_segmentation(tmp_path / "b", num_train=4, num_val=3)
    assert _digest(a) == _digest(b)
    assert make_demo_segmentation(a) == a  # present: nothing is rewritten
    samples = voc_samples(a, "val")
    assert len(samples) == 3 and len(voc_samples(a, "train")) == 4
    values = np.unique(np.concatenate([read_mask(s.mask).ravel() for s in samples]))
    assert set(values.tolist()) <= {0, 1, 2, 3, 255} and 255 in values
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary folder was renamed into place


def test_demo_datamodule_generates_on_first_use(tmp_path) -> None:
    dm = DemoSegmentationDataModule(
        root=str(tmp_path / "demo"), crop_size=64, batch_size=4, num_workers=0
    )
    assert dm.num_classes == len(DEMO_SEGMENTATION_CLASSES) == 4
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64)
