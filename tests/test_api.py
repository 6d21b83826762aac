"""`vtk.load(checkpoint).predict(image)`: a checkpoint written by `vtk fit`, used from Python."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vtk
from vtk.cli import main
from vtk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _fit(monkeypatch, tmp_path: Path, recipe: str, *extra: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv",
        ["vtk", "fit", str(ROOT / "recipes" / recipe), "--trainer.max_steps", "1",
         "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
         "--data.num_workers", "0", *extra],
    )  # fmt: skip
    main()
    return next(tmp_path.rglob("last.ckpt"))


def test_classification_checkpoint_predicts_from_a_path_an_array_and_a_pil_image(
    monkeypatch, tmp_path
) -> None:
    ckpt = _fit(monkeypatch, tmp_path, "demo_classification.yaml", "--data.image_size", "32")
    model = vtk.load(ckpt)
    image = Image.new("RGB", (50, 40), (200, 30, 30))
    image.save(tmp_path / "x.png")
    results = [
        model.predict(tmp_path / "x.png"),
        model.predict(image),
        model.predict(np.asarray(image)),
    ]
    assert results[0] == results[1] == results[2]
    assert len(results[0]["names"]) == 4 and set(results[0]["names"]) == {
        "circle", "square", "star", "triangle"
    }  # fmt: skip
    assert sum(results[0]["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_segmentation_checkpoint_predicts_a_map_at_the_image_size(monkeypatch, tmp_path) -> None:
    ckpt = _fit(monkeypatch, tmp_path, "demo_segmentation.yaml", "--data.crop_size", "64")
    labels = vtk.load(ckpt).predict(np.zeros((70, 90, 3), np.uint8))["labels"]
    assert labels.shape == (70, 90) and labels.max() < 4


def test_a_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        vtk.load(tmp_path / "nope.ckpt")
    import torch

    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ConfigError, match="was not saved by `vtk fit`"):
        vtk.load(tmp_path / "plain.ckpt")
