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
