"""Fine-tuning recipes run offline (weights: null): what only pretrained weights justify
(frozen stages, BatchNorm statistics in eval mode, FrozenBatchNorm2d) is released, said in one
line, and every parameter trains."""

from __future__ import annotations

import pytest
from torchvision.ops import FrozenBatchNorm2d

from vtk.recipe import Recipe, installed_recipes

FINETUNE = [p for p in installed_recipes() if p.stem.startswith("finetune_")]


@pytest.mark.parametrize("recipe", FINETUNE, ids=[p.stem for p in FINETUNE])
def test_nothing_stays_frozen_without_weights(recipe, vtk_log) -> None:
    if "timm" in recipe.stem:
        pytest.importorskip("timm")
    network = Recipe.load(recipe.stem, weights=False).network(num_classes=3)
    assert all(p.requires_grad for p in network.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in network.modules())
    assert all(m.training for m in network.train().modules())
    frozen = any(k in recipe.read_text() for k in ("frozen_stages", "norm_eval", "FrozenBatch"))
    assert ("has no pretrained weights" in vtk_log.text) == frozen


@pytest.mark.slow  # the recipe's whole schedule, twice
@pytest.mark.parametrize("release", [True, False], ids=["released", "kept-frozen"])
def test_the_detection_finetune_recipe_trains_without_weights(
    release, tmp_path, run_vtk, monkeypatch
) -> None:
    """The documented offline route (``weights: null``) of the detection fine-tune recipe on 8
    demo images: over the recipe's whole schedule (12 epochs, 48 steps at batch 2) the loss
    falls. Its stem, stage 1 and FrozenBatchNorm2d are random without weights: kept frozen
    (the release switched off, this test's check of itself) the loss does not fall. The run is
    seeded (augmentations included), so the figures repeat."""
    import csv

    from vtk.data.demo import make_demo_detection
    from vtk.models.backbones import base

    if not release:
        monkeypatch.setattr(base.Backbone, "release_frozen", lambda self: [])
    data = make_demo_detection(tmp_path / "set", num_train=8, num_val=2)
    small = "--model.init_args.model.init_args."
    code = run_vtk(
        "fit", "finetune_fcos_resnet50_custom_coco",
        "--data.train_images", data / "train", "--data.val_images", data / "val",
        "--data.train_annotations", data / "annotations/train.json",
        "--data.val_annotations", data / "annotations/val.json",
        f"{small}weights", "null", f"{small}min_size", "128", f"{small}max_size", "128",
        f"{small}backbone.init_args.arch", "resnet18",  # the recipe's freezing, a tenth of the time
        "--trainer.limit_val_batches", "0", "--data.num_workers", "0", "--data.batch_size", "2",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    assert code == 0, code
    (metrics,) = (tmp_path / "runs").rglob("metrics.csv")
    with open(metrics) as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == 48
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert (last < 0.85 * first) == release, (first, last)
