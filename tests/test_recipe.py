"""vtk.recipe: finding a recipe by name or path, overrides, what the data links into the task,
weights stripped, and the one error wording for a missing recipe."""

from __future__ import annotations

import pytest
from helpers import ROOT
from jsonargparse import Namespace

from vtk.data import DemoSegmentationDataModule
from vtk.errors import ConfigError
from vtk.models import Segmenter
from vtk.recipe import Recipe, find_recipe, recipes_dir, strip_weights
from vtk.tasks import SegmentationTask


def test_a_recipe_is_found_by_name_or_path(tmp_path, monkeypatch) -> None:
    installed = recipes_dir() / "demo_segmentation.yaml"
    monkeypatch.chdir(tmp_path)
    for name in ("demo_segmentation", "demo_segmentation.yaml", "recipes/demo_segmentation.yaml"):
        assert find_recipe(name) == installed
    own = tmp_path / "mine.yaml"
    own.write_text(installed.read_text())
    assert find_recipe(own) == own and find_recipe("mine.yaml") == own.relative_to(tmp_path)
    with pytest.raises(ConfigError, match=r"recipe elsewhere/demo_segmentation.yaml does not"):
        find_recipe("elsewhere/demo_segmentation.yaml")  # another folder: not a name
    with pytest.raises(ConfigError, match=r"recipe nope does not exist.*demo_detection"):
        find_recipe("nope")


def test_installed_recipes_are_the_repository_recipes() -> None:
    assert recipes_dir().resolve() == (ROOT / "recipes").resolve()


def test_overrides_reach_the_objects_and_data_is_linked_into_the_task() -> None:
    recipe = Recipe.load(
        "demo_segmentation",
        ["--data.crop_size", "64", "--model.init_args.model.init_args.backbone.init_args.arch",
         "resnet34"],
    )  # fmt: skip
    assert recipe.name == "demo_segmentation"
    assert recipe.config["data"]["init_args"]["crop_size"] == 64
    task, datamodule = recipe.build()
    assert isinstance(task, SegmentationTask) and isinstance(datamodule, DemoSegmentationDataModule)
    assert isinstance(task.model, Segmenter) and task.model.backbone.arch == "resnet34"
    assert task.num_classes == datamodule.num_classes == 4
    assert task.class_names == datamodule.class_names
    assert datamodule.crop_size == 64
    assert task.input_spec == datamodule.eval_spec()  # evaluation at each image's own size
    assert recipe.network(7).num_classes == 7
    assert recipe.task(5).num_classes == 5


def test_a_bad_key_is_one_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="crop_siz"):
        Recipe.load("demo_segmentation", ["--data.crop_siz", "64"])


def test_a_yaml_without_a_network_is_not_a_recipe(tmp_path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("trainer: {max_steps: 1}\n")
    with pytest.raises(ConfigError):
        Recipe.load(path)


def test_weights_are_stripped_from_dicts_lists_and_namespaces() -> None:
    config = {"a": {"weights": "imagenet", "b": [{"weights": "x.pth"}, 3]}, "weights": "coco"}
    assert strip_weights(config) == {
        "a": {"weights": None, "b": [{"weights": None}, 3]},
        "weights": None,
    }
    ns = Namespace(
        model=Namespace(weights="coco", backbone=Namespace(weights="imagenet", arch="r"))
    )
    strip_weights(ns)
    assert ns.model.weights is None and ns.model.backbone.weights is None
    assert ns.model.backbone.arch == "r"
    recipe = Recipe.load("fcos_resnet50_fpn_coco", weights=False)
    model = recipe.config["model"]["init_args"]["model"]["init_args"]
    assert model["weights"] is None and model["backbone"]["init_args"]["weights"] is None


@pytest.mark.parametrize("recipe", ["demo_classification", "demo_detection"])
def test_ignore_index_exists_only_for_segmentation(recipe) -> None:
    task, data = Recipe.load(recipe, weights=False).build()
    assert not hasattr(task, "ignore_index") and not hasattr(data, "ignore_index")
    seg_task, seg_data = Recipe.load("demo_segmentation", weights=False).build()
    assert seg_task.ignore_index == seg_data.ignore_index == 255
