"""DenseNet: torchvision parity, memory-efficient mode, output stride."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from vtk.models.backbones import DenseNet
from vtk.models.backbones.densenet import DENSENET_ARCHS

BLOCKS = [f"features.denseblock{i}" for i in (1, 2, 3)]


@pytest.mark.parametrize("arch", list(DENSENET_ARCHS))
def test_same_keys_params_and_outputs_as_torchvision(arch: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    state = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    ours = DenseNet(arch).eval()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = ours(x)
        expected = create_feature_extractor(reference, BLOCKS)(x)
        for name, y in zip(BLOCKS, got):
            torch.testing.assert_close(y, expected[name], rtol=0, atol=0)
        torch.testing.assert_close(got[-1], torch.relu(reference.features(x)), rtol=0, atol=0)
    assert ours.strides == [4, 8, 16, 32]


def test_memory_efficient_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = DenseNet("densenet121").train()
    efficient = DenseNet("densenet121", memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for m in (plain, efficient):
        sum(f.mean() for f in m(x)).backward()
    g1 = plain.features.denseblock1.denselayer1.conv1.weight.grad
    g2 = efficient.features.denseblock1.denselayer1.conv1.weight.grad
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_output_stride_16() -> None:
    model = DenseNet("densenet121", output_stride=16).eval()
    assert model.strides == [4, 8, 16, 16]
    assert model.features.transition3.pool.__class__.__name__ == "Identity"
    assert model(torch.randn(1, 3, 64, 64))[-1].shape[-1] == 4
