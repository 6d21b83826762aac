"""Every recipe is built by the real CLI and runs one training and one validation step on the
demo data of its task (its own data and pretrained weights are not here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vtk.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

#: the demo DataModule standing in for each task's data, at a tiny size
DEMO_DATA = {
    "vtk.tasks.SegmentationTask": {
        "class_path": "vtk.data.DemoSegmentationDataModule",
        "init_args": {"crop_size": 64, "batch_size": 2, "num_workers": 0},
    },
    "vtk.tasks.ClassificationTask": {
        "class_path": "vtk.data.DemoClassificationDataModule",
        "init_args": {"image_size": 32, "resize_size": 32, "batch_size": 2, "num_workers": 0},
    },
    "vtk.tasks.DetectionTask": {
        "class_path": "vtk.data.DemoDetectionDataModule",
        "init_args": {"batch_size": 2, "num_workers": 0},
    },
}

#: model arguments set small for the step (COCO recipes resize images to 800-1333 pixels)
TINY_MODEL = {"vtk.tasks.DetectionTask": {"min_size": 128, "max_size": 128}}


def _without_weights(node: Any) -> Any:
    """The recipe with every ``weights`` entry set to null (no downloads in tests)."""
    if isinstance(node, dict):
        return {k: None if k == "weights" else _without_weights(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_weights(v) for v in node]
    return node


def test_every_task_has_demo_data() -> None:
    tasks = {yaml.safe_load(p.read_text())["model"]["class_path"] for p in RECIPES}
    assert tasks <= set(DEMO_DATA), f"no demo data for {tasks - set(DEMO_DATA)}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_builds_and_steps_on_demo_data(recipe: Path, tmp_path: Path, monkeypatch) -> None:
    config = _without_weights(yaml.safe_load(recipe.read_text()))
    task = config["model"]["class_path"]
    config["data"] = DEMO_DATA[task]
    config["model"]["init_args"]["model"]["init_args"].update(TINY_MODEL.get(task, {}))
    tiny = tmp_path / recipe.name
    tiny.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv",
        ["vtk", "fit", str(tiny), "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
         "--trainer.devices", "1", "--trainer.precision", "32-true"],
    )  # fmt: skip
    main()
