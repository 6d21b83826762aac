"""ResNet / ResNeXt: torchvision parity, output stride, plug-in arguments, weights, errors."""

from __future__ import annotations

import logging
import urllib.error

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from vtk.errors import WeightsError
from vtk.models.backbones import ResNet, create_backbone, list_backbones
from vtk.models.backbones.resnet import RESNET_ARCHS

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
TORCHVISION_ARCHS = [a for a in RESNET_ARCHS if hasattr(torchvision.models, a)]


def _torchvision_features(arch: str, **kwargs) -> torch.nn.Module:
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    return create_feature_extractor(model, return_nodes=LAYERS).eval()


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_same_keys_params_and_outputs_as_torchvision(arch: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    ours = ResNet(arch).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert list(ours.state_dict()) == list(state)  # same names, same order
    n_ref = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in ours.parameters()) == n_ref
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = create_feature_extractor(reference, return_nodes=LAYERS)(x)
        got = ours(x)
    for name, y in zip(LAYERS, got):
        torch.testing.assert_close(y, expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_matches_torchvision_replace_stride_with_dilation(output_stride: int) -> None:
    replace = [False, output_stride == 8, True]
    reference = _torchvision_features("resnet50", replace_stride_with_dilation=replace)
    ours = ResNet("resnet50", output_stride=output_stride).eval()
    ours.load_state_dict(reference.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    for name, y in zip(LAYERS, got):
        torch.testing.assert_close(y, expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_info_describes_the_outputs(arch: str, output_stride: int) -> None:
    model = ResNet(arch, output_stride=output_stride).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, 64, 96))
    expected_strides = [min(s, output_stride) for s in (4, 8, 16, 32)]
    assert model.strides == expected_strides
    for info, f in zip(model.feature_info, features):
        assert f.shape[1] == info.channels
        assert f.shape[-2:] == (64 // info.stride, 96 // info.stride)


def test_multi_grid_sets_the_last_stage_rates() -> None:
    model = ResNet("resnet101", output_stride=16, multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 8]  # DeepLabv3 §3.2 example
    assert [b.conv2.stride[0] for b in model.layer4] == [1, 1, 1]
    with pytest.raises(ValueError, match="one rate per block"):
        ResNet("resnet50", multi_grid=(1, 2))


def test_out_indices_builds_only_what_is_needed() -> None:
    model = ResNet("resnet18", out_indices=(1, 2))
    assert model.layer4 is None and model.layer3 is not None
    assert [f.module for f in model.feature_info] == ["layer2", "layer3"]
    assert len(model(torch.randn(1, 3, 32, 32))) == 2
    with pytest.raises(ValueError, match="out_indices"):
        ResNet("resnet18", out_indices=(4,))


def test_frozen_stages_and_norm_eval() -> None:
    model = ResNet("resnet18", frozen_stages=2, norm_eval=False).train()
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert not model.bn1.training and not model.layer2[0].bn1.training
    assert model.layer3[0].bn1.training

    model = ResNet("resnet18", norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_bn_layer_type_is_an_argument() -> None:
    model = ResNet("resnet18", norm_layer=torchvision.ops.FrozenBatchNorm2d)
    assert isinstance(model.bn1, torchvision.ops.FrozenBatchNorm2d)
    assert len(model(torch.randn(1, 3, 32, 32))) == 4


def test_weights_from_a_file_load_and_report(tmp_path, caplog) -> None:
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="vtk"):
        ours = ResNet("resnet18", weights=str(path)).eval()
    assert "fc" in caplog.text  # the ImageNet classifier is reported as unused
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = create_feature_extractor(reference, return_nodes=["layer4"])(x)["layer4"]
        torch.testing.assert_close(ours(x)[-1], expected, rtol=0, atol=0)


def test_weights_from_a_whole_model_checkpoint_find_their_prefix(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "ckpt.pth"
    torch.save(
        {"state_dict": {f"model.backbone.{k}": v for k, v in reference.state_dict().items()}}, path
    )
    ours = ResNet("resnet18", weights=str(path))
    torch.testing.assert_close(ours.conv1.weight, reference.conv1.weight)


def test_weights_of_another_architecture_are_refused(tmp_path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="another shape"):
        ResNet("resnet18", weights=str(path))
    torch.save({"foo.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="none of the 1 tensors"):
        ResNet("resnet18", weights=str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        ResNet("resnet18", weights=str(tmp_path / "missing.pth"))


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"could not download.*pass its path"):
        ResNet("resnet18", weights="imagenet")
    with pytest.raises(WeightsError, match="valid names"):
        ResNet("resnet18", weights="IMAGENET1K_V9")


@pytest.mark.parametrize(
    "arch,expected",
    [("seresnet50", 28_088_024), ("seresnext50_32x4d", 27_559_896)],  # SENet paper / timm
)
def test_senet_parameter_counts_with_an_imagenet_classifier(arch: str, expected: int) -> None:
    backbone = ResNet(arch)
    assert (
        backbone.layer1[0].attn.fc1.out_channels == 256 // 16
    )  # reduction 16, 1x1 convs with bias
    fc = backbone.out_channels[-1] * 1000 + 1000
    assert sum(p.numel() for p in backbone.parameters()) + fc == expected
    assert (
        ResNet(arch).state_dict().keys()
        == ResNet(arch.replace("se", "", 1), attention="se").state_dict().keys()
    )
    with pytest.raises(ValueError, match="built in"):
        ResNet(arch, attention="cbam")


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="resnet50") as e:
        create_backbone("resnet5")
    assert "resnext50_32x4d" in str(e.value)
    with pytest.raises(ValueError, match="valid: resnet10, resnet18"):
        ResNet("resnet5")  # type: ignore[arg-type]
    assert "resnet101" in list_backbones()
    assert create_backbone("resnet18", output_stride=8).strides == [4, 8, 8, 8]
