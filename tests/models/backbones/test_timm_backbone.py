"""vtk.models.backbones.TimmBackbone: timm's networks behind vtk's backbone contract, for one
variant of the ResNet, ConvNeXt, EfficientNet and RegNet families, through every task's model,
with weights from a local file, frozen stages, output stride, BN folding and ONNX export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from vtk.errors import ConfigError, WeightsError  # noqa: E402
from vtk.models import FCOS, Classifier, Segmenter  # noqa: E402
from vtk.models.backbones import TimmBackbone  # noqa: E402
from vtk.models.fuse import fold_batchnorm  # noqa: E402
from vtk.models.heads import DeepLabV3PlusHead  # noqa: E402

FAMILIES = ["resnet18", "convnext_atto", "efficientnet_b0", "regnetx_002"]


@pytest.mark.parametrize("name", FAMILIES)
def test_stages_channels_and_strides_are_timms(name) -> None:
    """vtk's stage 0 is timm's first stride-4 level; channels and strides are timm's."""
    torch.manual_seed(0)
    backbone = TimmBackbone(name).eval()
    reference = timm.create_model(name, features_only=True).eval()
    reference.load_state_dict(backbone.body.state_dict())
    levels = [d for d in reference.feature_info.get_dicts() if d["reduction"] >= 4]
    assert backbone.out_channels == [d["num_chs"] for d in levels]
    assert backbone.strides == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = backbone(x), reference(x)[-4:]
    assert [tuple(g.shape) for g in got] == [(1, c, 64 // s, 64 // s) for c, s in
                                             zip(backbone.out_channels, backbone.strides)]  # fmt: skip
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    # out_indices: only the stages up to the last requested one are built
    c4 = TimmBackbone(name, out_indices=[1, 2])
    assert c4.strides == [8, 16] and c4.out_channels == backbone.out_channels[1:3]
    assert sum(p.numel() for p in c4.parameters()) < sum(p.numel() for p in backbone.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_weights_load_from_a_local_file(name, tmp_path) -> None:
    """timm's own checkpoint format (a full model's state_dict), saved from a random init."""
    torch.manual_seed(1)
    full = timm.create_model(name)
    torch.save(full.state_dict(), tmp_path / "weights.pth")
    backbone = TimmBackbone(name, out_indices=[1, 2, 3], weights=str(tmp_path / "weights.pth"))
    # timm's feature wrapper renames "stem.0" to "stem_0": compare with dots and underscores alike
    source = {k.replace(".", "_"): v for k, v in full.state_dict().items()}
    loaded = {k.replace(".", "_"): v for k, v in backbone.body.state_dict().items()}
    assert loaded and set(loaded) <= set(source), sorted(set(loaded) - set(source))[:5]
    for key, value in loaded.items():
        assert torch.equal(value, source[key]), key
    with pytest.raises(WeightsError, match="reads weights from a local file only"):
        TimmBackbone(name, weights="imagenet")


def test_frozen_stages_and_vtk_plugins() -> None:
    b = TimmBackbone("resnet18", frozen_stages=1)
    frozen = {n for n, p in b.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("body.conv1", "body.bn1", "body.layer1")) for n in frozen)
    assert any(n.startswith("body.layer1") for n in frozen)
    b.train()
    assert not b.body.layer1.training and b.body.layer2.training
    e = TimmBackbone("efficientnet_b0", frozen_stages=0)
    assert {n.split(".")[1] for n, p in e.named_parameters() if not p.requires_grad} == {
        "conv_stem", "bn1", "blocks"
    } and all(p.requires_grad for p in e.body.blocks[1].parameters())  # fmt: skip
    with pytest.raises(ConfigError, match="attention plug-ins are built into vtk's own blocks"):
        TimmBackbone("resnet18", attention="se")
    se = TimmBackbone("resnet18", attn_layer="se")
    assert any("se" in n for n, _ in se.named_modules())
    with pytest.raises(ConfigError, match="timm has no model 'resnet_18'"):
        TimmBackbone("resnet_18")


def test_output_stride_16_dilates_the_last_stage() -> None:
    b = TimmBackbone("resnet18", output_stride=16)
    assert b.strides == [4, 8, 16, 16]
    assert b(torch.randn(1, 3, 64, 64))[-1].shape[-1] == 4


@pytest.mark.parametrize("name", FAMILIES)
def test_every_task_model_takes_it(name) -> None:
    x = torch.randn(2, 3, 64, 64)
    classifier = Classifier(TimmBackbone(name), num_classes=5)
    assert classifier(x).shape == (2, 5)
    segmenter = Segmenter(
        TimmBackbone(name, output_stride=16), head=DeepLabV3PlusHead, num_classes=3
    )
    assert segmenter(x)["out"].shape == (2, 3, 64, 64)
    detector = FCOS(
        TimmBackbone(name, out_indices=[1, 2, 3]), num_classes=2, min_size=64, max_size=64
    )
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    losses = detector(list(x), targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_batchnorm_folds_and_onnx_exports(name, tmp_path) -> None:
    """timm's BatchNormAct2d (EfficientNet, RegNet) folds into its conv keeping the activation;
    ConvNeXt has LayerNorm only (nothing to fold)."""
    torch.manual_seed(0)
    model = Classifier(TimmBackbone(name), num_classes=4).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    _, report = fold_batchnorm(model, torch.randn(2, 3, 64, 64))
    assert report["pairs"] == norms
    pytest.importorskip("onnxruntime")
    from vtk.export import export_onnx
    from vtk.tasks import ClassificationTask

    export_onnx(ClassificationTask(model, class_names=list("abcd")), tmp_path / "m.onnx", size=64)
    assert (tmp_path / "m.onnx").stat().st_size > 0
