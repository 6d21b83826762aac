"""Every backbone family x every plug-in kind: forward, backward, gradients, shapes.

The plug-in list is built from the registries (``ATTENTION``, ``DEFORM_CONV``), so a new
attention module or deformable-conv version is tested without editing this file.
"""

from __future__ import annotations

import pytest
import torch
from helpers import FAMILIES, PLUGINS

from vtk.models.backbones import create_backbone


@pytest.mark.parametrize("plugin", list(PLUGINS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_forward_backward_every_parameter_gets_a_gradient(family: str, plugin: str) -> None:
    torch.manual_seed(0)
    model = create_backbone(family, **PLUGINS[plugin]).train()
    size = FAMILIES[family]
    features = model(torch.randn(2, 3, size, size))
    assert len(features) == len(model.feature_info)
    for f, info in zip(features, model.feature_info):
        assert f.shape == (2, info.channels, size // info.stride, size // info.stride), info
        assert torch.isfinite(f).all()
    sum(f.float().mean() for f in features).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("family", list(FAMILIES))
def test_plugin_parameters_are_new_names_only(family: str) -> None:
    """A plug-in adds parameters beside the plain network's and never renames them, so the
    plain network's (torchvision's) weights still load."""
    plain = set(create_backbone(family).state_dict())
    for kwargs in PLUGINS.values():
        assert plain <= set(create_backbone(family, **kwargs).state_dict()), kwargs


@pytest.mark.parametrize("family", ["resnet50", "vgg11_bn", "densenet121", "resnet20"])
@pytest.mark.parametrize("plugin", ["non_local", "stn", "deform=v1", "attention=gc"])
def test_identity_at_initialisation(family: str, plugin: str) -> None:
    """Non-local (BN scale 0), STN (identity affine), deformable v1 (zero offsets) and GC (zero
    last conv) start as the network without them."""
    torch.manual_seed(0)
    plain = create_backbone(family).eval()
    with_plugin = create_backbone(family, **PLUGINS[plugin]).eval()
    with_plugin.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, FAMILIES[family], FAMILIES[family])
    with torch.no_grad():
        for a, b in zip(plain(x), with_plugin(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_default_stages_are_the_papers_configurations() -> None:
    """SE / CBAM / ECA in every stage (their ImageNet networks); GC and deformable convs from c3
    (stride 8) on, as GCNet's and DCNv2's detection configurations; overridable."""
    resnet = create_backbone("resnet50", attention="gc", deform="v2")
    assert [resnet.layer1[0].attn is None, resnet.layer2[0].attn is None] == [True, False]
    assert type(resnet.layer1[0].conv2).__name__ == "Conv2d"
    assert type(resnet.layer2[0].conv2).__name__ == "DeformConv2d"
    assert resnet.plugin_stages() == {
        "attention gc": "stages 1, 2, 3", "deform v2": "stages 1, 2, 3"
    }  # fmt: skip
    assert create_backbone("vgg16", attention="gc").plugin_stages()["attention gc"] == (
        "stages 2, 3, 4"
    )  # the pool of VGG's stage 2 has stride 8
    assert create_backbone("resnet50", attention="se").layer1[0].attn is not None
    assert create_backbone("resnet50", attention="gc", attention_stages=[0]).layer1[0].attn
    assert create_backbone("resnet50", deform="v1", deform_stages=[3]).plugin_stages() == {
        "deform v1": "stages 3"
    }  # fmt: skip


def test_attention_placement() -> None:
    resnet = create_backbone("resnet50", attention="cbam", attention_stages=[2, 3])
    assert resnet.layer1[0].attn is None and resnet.layer3[0].attn is not None
    assert resnet.layer3[0].attn.channel.mlp[0].in_channels == 1024  # end of the residual branch
    vgg = create_backbone("vgg16_bn", attention="se")
    assert [m.fc1.in_channels for m in vgg.attn] == [64, 128, 256, 512, 512]  # end of each stage
    dense = create_backbone("densenet121", attention="eca")
    assert len(dense.attn) == 4  # on each dense block's output


def test_deform_replaces_the_3x3_convs_of_the_chosen_stages() -> None:
    from vtk.models.layers import DeformConv2d

    m = create_backbone("resnet50", deform="v2", deform_stages=[3])
    assert isinstance(m.layer4[0].conv2, DeformConv2d) and m.layer4[0].conv2.modulated
    assert not isinstance(m.layer3[0].conv2, DeformConv2d)
    assert m.layer4[0].conv2.groups == 1
    x = create_backbone("resnext50_32x4d", deform="v1", deform_stages=[3])
    assert x.layer4[0].conv2.groups == 32  # grouped deformable conv for ResNeXt


def test_plugins_that_cannot_go_there_say_why() -> None:
    with pytest.raises(ValueError, match=r"unknown attention 'sk'; valid: se, cbam, eca, gc"):
        create_backbone("resnet18", attention="sk")
    with pytest.raises(
        ValueError, match=r"attention_stages names stages \[4\]; ResNet has stages 0..3"
    ):
        create_backbone("resnet18", attention="se", attention_stages=[4])
    with pytest.raises(
        ValueError, match=r"non_local asks for blocks \[2\] of stage 1, which has blocks 0..1"
    ):
        create_backbone("resnet18", non_local={1: [2]})
    with pytest.raises(
        ValueError, match=r"non_local asks for convs \[2\] of stage 0, which has convs 0..0"
    ):
        create_backbone("vgg11", non_local={0: [2]})
    with pytest.raises(ValueError, match="unknown deform 'v3'; valid: v1, v2"):
        create_backbone("densenet121", deform="v3")
    with pytest.raises(
        ValueError, match=r"deform_stages names stages \[3\]; CifarResNet has stages 0..2"
    ):
        create_backbone("resnet20", deform="v1", deform_stages=[3])
    with pytest.raises(ValueError, match="blur_pool is a filter size"):
        create_backbone("resnet18", blur_pool=9)
