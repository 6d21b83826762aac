"""BatchNorm folded into convolutions: the folded network's outputs equal the original's
within 1e-4 (max abs, fp32, relative to the largest output value where that is above 1: deep
ResNets' last stages reach values of 10-30, where fp32's own rounding is ~1e-6 of them) for
every backbone family x plug-in, the necks and the heads, with BatchNorm statistics measured on
data and random affine parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from helpers import FAMILIES, PLUGINS
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from vtk.models import FCOS, ResNet, RetinaNet, Segmenter
from vtk.models.backbones import create_backbone
from vtk.models.fuse import fold_batchnorm
from vtk.models.heads import DeepLabV3Head, FCNHead
from vtk.models.necks import ASFFNeck, RFBNeck


def _trained_statistics(
    model: nn.Module, size: int = 64, run: Callable[[nn.Module, Tensor], Any] | None = None
) -> nn.Module:
    """Running statistics measured on data (random images, as training measures them) and
    random affine parameters, as a trained network has: not the identity, and activations of
    the scale a trained network's are. ``run``: the forward pass that reaches the norms."""
    g = torch.Generator().manual_seed(0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            n = m.running_mean.numel()
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.rand(n, generator=g) - 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0  # the statistics of the batch below
            else:  # frozen: statistics given
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        model.train()
        # 8 images at twice the size: enough positions that no channel's variance is ~0
        (run or (lambda m, x: m(x)))(model, torch.randn(8, 3, 2 * size, 2 * size, generator=g))
    return model.eval()


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d) for m in model.modules())


#: every family plain, and every plug-in on a ResNet-18 and a VGG-11-BN (tiny inputs)
CASES = [(family, "none") for family in FAMILIES] + [
    (family, plugin)
    for family in ("resnet18", "vgg11_bn")
    for plugin in PLUGINS
    if plugin != "none"
]


@pytest.mark.parametrize(("family", "plugin"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_folded_backbone_equals_the_original(family: str, plugin: str) -> None:
    torch.manual_seed(0)
    size = FAMILIES[family]
    model = _trained_statistics(create_backbone(family, **PLUGINS[plugin]), size)
    x = torch.randn(1, 3, size, size)
    before = _norms(model)
    folded, report = fold_batchnorm(model, x)
    assert _norms(folded) == before - report["pairs"]
    assert report["pairs"] > 0 or before == 0  # VGG-16 "C" has no BatchNorm
    with torch.no_grad():
        for a, b in zip(model(x), folded(x)):  # each stage's features
            assert (a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max()), (family, plugin)
    assert _norms(model) == before  # the original is untouched


@pytest.mark.parametrize(
    "build",
    [
        lambda: Segmenter(
            ResNet("resnet18", output_stride=8), head=DeepLabV3Head, num_classes=5, aux_head=FCNHead
        ),
        lambda: FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 3, min_size=64, max_size=64),
        lambda: FCOS(
            ResNet("resnet18", out_indices=(1, 2, 3), norm_layer=FrozenBatchNorm2d),
            3,
            neck=ASFFNeck,
            min_size=64,
            max_size=64,
        ),
        lambda: RetinaNet(
            ResNet("resnet18", out_indices=(1, 2, 3)), 3, neck=RFBNeck, min_size=64, max_size=64
        ),
    ],
    ids=["deeplabv3", "fcos_fpn", "fcos_asff_frozenbn", "retinanet_rfb"],
)
def test_folded_necks_and_heads_equal_the_original(build) -> None:
    torch.manual_seed(0)
    model = build()
    detector = hasattr(model, "transform")
    model = _trained_statistics(model, 64, (lambda m, x: m.backbone(x)) if detector else None)
    x = torch.randn(1, 3, 64, 64)
    # a detector's norms are in its backbone and neck (the heads have GroupNorm or none);
    # compared before NMS, where a rounding difference cannot reorder boxes
    run = (lambda m, x: m.backbone(x)) if detector else None
    folded, report = fold_batchnorm(model, x, run)
    assert report["pairs"] > 0
    if detector:  # features, and the head's outputs on them (what NMS then selects from)
        with torch.no_grad():
            a, b = model.backbone(x), folded.backbone(x)
            assert all((a[k] - b[k]).abs().max() <= 1e-4 * max(1.0, a[k].abs().max()) for k in a)
            ha, hb = model.head(list(a.values())), folded.head(list(b.values()))
        for k in ha:
            assert (ha[k] - hb[k]).abs().max() <= 1e-4 * max(1.0, ha[k].abs().max()), k
    else:
        with torch.no_grad():
            want = model(x)["out"]
            assert (want - folded(x)["out"]).abs().max() <= 1e-4 * max(1.0, want.abs().max())


def test_a_convolution_read_twice_is_not_folded() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv's output is read by the norm and the sum

    model = _trained_statistics(Twice())
    with pytest.raises(ValueError, match="folding BatchNorm changed the output"):
        fold_batchnorm(model, torch.randn(1, 3, 8, 8))
