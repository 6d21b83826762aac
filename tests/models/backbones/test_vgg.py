"""VGG: torchvision parity for every configuration it has, configuration C, output stride."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vtk.models.backbones import VGG
from vtk.models.backbones.vgg import VGG_ARCHS

TORCHVISION_ARCHS = [a for a in VGG_ARCHS if hasattr(torchvision.models, a)]


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_same_keys_params_and_outputs_as_torchvision(arch: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    state = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    ours = VGG(arch).eval()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[-1], reference.features(x), rtol=0, atol=0)
    assert ours.strides == [2, 4, 8, 16, 32] and ours.out_channels == [64, 128, 256, 512, 512]


def test_configuration_c_has_1x1_convs_in_stages_3_to_5() -> None:
    c, d = VGG("vgg16_c"), VGG("vgg16")
    kernels = [m.kernel_size[0] for m in c.features if isinstance(m, torch.nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    n_c, n_d = (sum(p.numel() for p in m.parameters()) for m in (c, d))
    assert n_d - n_c == 8 * (256 * 256 + 2 * 512 * 512)  # three 3x3 convs became 1x1


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_keeps_the_resolution(output_stride: int) -> None:
    model = VGG("vgg11", output_stride=output_stride).eval()
    assert model.strides == [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
    features = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [64 // s for s in model.strides]
