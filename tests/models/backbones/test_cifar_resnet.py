"""CIFAR ResNets (ResNet paper §4.2): depths, parameter counts, shortcut options A/B/C."""

from __future__ import annotations

import pytest
import torch

from vtk.models.backbones import CifarResNet
from vtk.models.backbones.resnet import ZeroPadShortcut


def _params_with_cifar10_classifier(model: CifarResNet) -> int:
    return sum(p.numel() for p in model.parameters()) + 64 * 10 + 10


@pytest.mark.parametrize("arch,millions", [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66),
                                           ("resnet56", 0.85), ("resnet110", 1.7)])  # fmt: skip
def test_parameter_counts_of_table_6(arch: str, millions: float) -> None:
    n = _params_with_cifar10_classifier(CifarResNet(arch)) / 1e6
    assert round(n, 1 if millions >= 1 else 2) == millions  # to the paper's precision


def test_depth_is_6n_plus_2() -> None:
    model = CifarResNet("resnet56")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 56  # + the classifier
    assert [len(s) for s in model.stages] == [9, 9, 9]


def test_shortcut_options() -> None:
    a, b, c = (CifarResNet("resnet20", shortcut=s) for s in "ABC")
    assert isinstance(a.layer2[0].downsample, ZeroPadShortcut) and a.layer2[1].downsample is None
    assert (
        isinstance(b.layer2[0].downsample, torch.nn.Sequential) and b.layer2[1].downsample is None
    )
    assert isinstance(c.layer2[1].downsample, torch.nn.Sequential)  # projections everywhere
    n = [sum(p.numel() for p in m.parameters()) for m in (a, b, c)]
    assert n[0] < n[1] < n[2]
    x = torch.randn(2, 3, 32, 32)
    for m in (a, b, c):
        assert [f.shape[1:] for f in m(x)] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_zero_padding_shortcut_keeps_the_input_and_pads_zeros() -> None:
    x = torch.randn(1, 4, 6, 6)
    y = ZeroPadShortcut(4, 8, 2)(x)
    assert y.shape == (1, 8, 3, 3)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert (y[:, 4:] == 0).all()
