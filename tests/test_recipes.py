"""Every recipe is built by the real CLI and runs one training and one validation step on the
demo data of its task (its own data and pretrained weights are not here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from vtk.recipe import Recipe, installed_recipes, strip_weights

RECIPES = installed_recipes()

#: the demo DataModule standing in for each task's data, at a tiny size
DEMO_DATA = {
    "vtk.tasks.SegmentationTask": {
        "class_path": "vtk.data.DemoSegmentationDataModule",
        "init_args": {"crop_size": 64, "batch_size": 2, "num_workers": 0},
    },
    "vtk.tasks.BinarySegmentationTask": {
        "class_path": "vtk.data.DemoSegmentationDataModule",
        "init_args": {"crop_size": 64, "batch_size": 2, "num_workers": 0, "binary": True},
    },
    "vtk.tasks.ClassificationTask": {
        "class_path": "vtk.data.DemoClassificationDataModule",
        "init_args": {"image_size": 32, "resize_size": 32, "batch_size": 2, "num_workers": 0},
    },
    "vtk.tasks.MultiLabelClassificationTask": {
        "class_path": "vtk.data.DemoMultiLabelDataModule",
        "init_args": {"image_size": 32, "resize_size": 32, "batch_size": 2, "num_workers": 0},
    },
    "vtk.tasks.DetectionTask": {
        "class_path": "vtk.data.DemoDetectionDataModule",
        "init_args": {"batch_size": 2, "num_workers": 0},
    },
}

#: network arguments set small for the step, by network (COCO recipes resize images to 800-1333
#: pixels; SSD's sizes are 300 or 512 only)
TINY_MODEL = {
    "vtk.models.FCOS": {"min_size": 128, "max_size": 128},
    "vtk.models.RetinaNet": {"min_size": 128, "max_size": 128},
}


def test_every_task_has_demo_data() -> None:
    tasks = {yaml.safe_load(p.read_text())["model"]["class_path"] for p in RECIPES}
    assert tasks <= set(DEMO_DATA), f"no demo data for {tasks - set(DEMO_DATA)}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_builds_and_steps_on_demo_data(
    recipe: Path, tmp_path: Path, run_vtk, vtk_log
) -> None:
    """As a user runs it on a CPU machine: the recipe's own precision (``auto`` in the GPU
    recipes: fp32 here, not Lightning's bf16 for their 16-mixed)."""
    config = strip_weights(yaml.safe_load(recipe.read_text()))  # no downloads in tests
    task = config["model"]["class_path"]
    config["data"] = DEMO_DATA[task]
    network = config["model"]["init_args"]["model"]
    network["init_args"].update(TINY_MODEL.get(network["class_path"], {}))
    tiny = tmp_path / recipe.name
    tiny.write_text(yaml.safe_dump(config))
    code = run_vtk(
        "fit", tiny, "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
    )  # fmt: skip
    assert code == 0, code
    if config["trainer"].get("precision") == "auto":
        assert "precision auto -> 32-true on cpu" in vtk_log.text


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_parses_with_its_own_data_section(recipe: Path) -> None:
    """The step above swaps the data for demo data: here every key of the recipe's own data
    (and model) section must exist in the signatures."""
    loaded = Recipe.load(recipe.stem, weights=False)
    assert (
        loaded.config["data"]["class_path"]
        == yaml.safe_load(recipe.read_text())["data"]["class_path"]
    )


@pytest.mark.parametrize(
    ("recipe", "num_classes", "ignore_index", "crop"),
    [
        ("deeplabv3plus_resnet101_cityscapes", 19, 255, (512, 1024)),
        ("deeplabv3_resnet50_ade20k", 150, 255, 512),
        ("deeplabv3plus_resnet50_camvid", 11, 11, (360, 480)),
    ],
)
def test_segmentation_recipes_read_their_datasets_conventions(
    recipe: str, num_classes: int, ignore_index: int, crop
) -> None:
    task, data = Recipe.load(recipe, weights=False).build()  # the data's files are read at setup
    assert data.num_classes == task.num_classes == num_classes
    assert data.ignore_index == task.ignore_index == ignore_index
    assert tuple(np.atleast_1d(data.crop_size)) == tuple(np.atleast_1d(crop))
    assert len(data.class_names) == num_classes


def test_the_readme_finetune_command_runs_on_a_cpu(tmp_path: Path, run_vtk, vtk_log) -> None:
    """The fine-tune command of docs/detection.md as written (three paths; offline: weights null), on a
    COCO-format set, two steps: on a CPU the recipe's precision is fp32, not bf16."""
    from vtk.data.demo import make_demo_detection

    data = make_demo_detection(tmp_path / "set", num_train=8, num_val=4)
    small = "--model.init_args.model.init_args."
    code = run_vtk(
        "fit", "finetune_fcos_resnet50_custom_coco",  # the installed recipe, run in tmp_path
        "--data.train_images", data / "train", "--data.val_images", data / "val",
        "--data.train_annotations", data / "annotations/train.json",
        "--data.val_annotations", data / "annotations/val.json",
        f"{small}weights", "null", f"{small}min_size", "96", f"{small}max_size", "128",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--data.num_workers", "0",
        "--data.batch_size", "2", "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, code
    assert "precision auto -> 32-true on cpu" in vtk_log.text


def test_the_image_folder_finetune_command_runs_on_a_cpu(tmp_path: Path, run_vtk) -> None:
    """docs/classification.md's fine-tune command as written (offline: weights null), on an image
    folder with two classes, two steps and a validation."""
    from PIL import Image

    for split, n in (("train", 6), ("val", 2)):
        for k, colour in enumerate(("red", "blue")):
            folder = tmp_path / "my_dataset" / split / ("ants", "bees")[k]
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 36), colour).save(folder / f"{i}.jpg")
    code = run_vtk(
        "fit", "finetune_resnet50_imagefolder", "--data.root", tmp_path / "my_dataset",
        "--model.init_args.model.init_args.backbone.init_args.weights", "null",
        "--model.init_args.model.init_args.backbone.init_args.arch", "resnet18",
        "--data.image_size", "32", "--data.resize_size", "36", "--data.batch_size", "4",
        "--data.num_workers", "0", "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, code
    run = tmp_path / "runs" / "finetune_resnet50_imagefolder" / "version_0"
    assert len(list(run.rglob("best-*.ckpt"))) == 1  # validated at the end of the short fit
    # docs/recipes.md: one folder, the validation images carved out of it
    import shutil

    shutil.rmtree(tmp_path / "my_dataset" / "val")
    code = run_vtk(
        "fit", "finetune_resnet50_imagefolder", "--data.root", tmp_path / "my_dataset",
        "--data.val_fraction", "0.25",
        "--model.init_args.model.init_args.backbone.init_args.weights", "null",
        "--model.init_args.model.init_args.backbone.init_args.arch", "resnet18",
        "--data.image_size", "32", "--data.resize_size", "36", "--data.batch_size", "4",
        "--data.num_workers", "0", "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, code
    split = json.loads((run.parent / "version_1" / "data_split.json").read_text())
    assert (len(split["train"]), len(split["val"])) == (8, 4)
