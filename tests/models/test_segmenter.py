"""Segmenter + DeepLab heads: torchvision parity, shapes, gradients, weights with other classes."""

from __future__ import annotations

import logging
from functools import partial

import pytest
import torch
import torchvision

from vtk.errors import WeightsError
from vtk.models import DeepLabV3Head, DeepLabV3PlusHead, FCNHead, ResNet, Segmenter


def _deeplabv3_resnet101(num_classes: int = 21, weights: str | None = None) -> Segmenter:
    """vtk configured as torchvision's deeplabv3_resnet101: output stride 8, rates 12/24/36, aux."""
    return Segmenter(
        ResNet("resnet101", output_stride=8),
        head=partial(DeepLabV3Head, atrous_rates=(12, 24, 36)),
        num_classes=num_classes,
        aux_head=FCNHead,
        weights=weights,
    )


def test_deeplabv3_resnet101_matches_torchvision(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.segmentation.deeplabv3_resnet101(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    path = tmp_path / "deeplabv3_resnet101.pth"
    torch.save(reference.state_dict(), path)

    ours = _deeplabv3_resnet101(weights=str(path)).eval()
    assert sum(p.numel() for p in ours.parameters()) == 60_996_202
    assert list(ours.state_dict()) == list(reference.state_dict())

    x = torch.randn(2, 3, 67, 53)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
        torch.testing.assert_close(got["out"], expected["out"], rtol=0, atol=0)
        assert "aux" not in got  # the auxiliary head is for training only
        ours_aux = ours.aux_classifier(ours.backbone(x))
        ref_aux = reference.aux_classifier(reference.backbone(x)["aux"])
        torch.testing.assert_close(ours_aux, ref_aux, rtol=0, atol=0)


def test_other_num_classes_reinitialises_only_the_logits(tmp_path, caplog) -> None:
    source = Segmenter(ResNet("resnet18"), head=DeepLabV3Head, num_classes=21, aux_head=FCNHead)
    path = tmp_path / "voc.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="vtk"):
        target = Segmenter(
            ResNet("resnet18"),
            head=DeepLabV3Head,
            num_classes=5,
            aux_head=FCNHead,
            weights=str(path),
        )
    assert "re-initialised aux_classifier.4, classifier.4" in caplog.text
    torch.testing.assert_close(target.classifier[1].weight, source.classifier[1].weight)
    torch.testing.assert_close(target.backbone.conv1.weight, source.backbone.conv1.weight)
    assert target.classifier[4].weight.shape[0] == 5

    other_backbone = Segmenter(ResNet("resnet50"), head=DeepLabV3Head, num_classes=21)
    torch.save(other_backbone.state_dict(), path)
    with pytest.raises(WeightsError, match="another shape"):
        Segmenter(
            ResNet("resnet18", output_stride=8),
            head=DeepLabV3Head,
            num_classes=21,
            weights=str(path),
        )


HEADS = {
    "deeplabv3": DeepLabV3Head,
    "deeplabv3_no_pooling": partial(DeepLabV3Head, image_pooling=False),
    "deeplabv3plus": DeepLabV3PlusHead,
}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("output_stride", [8, 16])
def test_train_step_reaches_every_parameter(head: str, output_stride: int) -> None:
    torch.manual_seed(0)
    model = Segmenter(
        ResNet("resnet18", output_stride=output_stride),
        head=HEADS[head],
        num_classes=3,
        aux_head=FCNHead,
    ).train()
    x = torch.randn(2, 3, 48, 40)
    out = model(x)
    assert out["out"].shape == (2, 3, 48, 40) and out["aux"].shape == (2, 3, 48, 40)
    (out["out"].mean() + out["aux"].mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_deeplabv3plus_fuses_the_stride4_features() -> None:
    backbone = ResNet("resnet50", output_stride=16)
    head = DeepLabV3PlusHead(backbone.out_channels, num_classes=4)
    assert head.reduce[0].in_channels == backbone.feature_info[0].channels == 256
    assert head.aspp.convs[0][0].in_channels == 2048
    features = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert head.eval()(features).shape == (1, 4, 16, 16)  # logits at stride 4


def test_num_classes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        Segmenter(ResNet("resnet18"), head=DeepLabV3Head, num_classes=0)
