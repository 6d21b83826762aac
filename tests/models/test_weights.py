"""What weights say about their input: the normalisation torchvision's weights enum, timm's
``pretrained_cfg`` and vtk's cards give, carried by the backbone to detectors and data."""

from __future__ import annotations

import pytest
import torch

from vtk.models import FCOS, SSD, ResNet
from vtk.models.backbones import VGG
from vtk.models.backbones.base import network_normalisation
from vtk.models.weights import weights_normalisation
from vtk.spec import IMAGENET_MEAN, IMAGENET_STD

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_the_weights_owner_says_the_normalisation() -> None:
    # torchvision's enum, read without downloading: ImageNet's, and the Caffe convention of the
    # VGG-16 features SSD starts from
    assert weights_normalisation("imagenet", "resnet50") == (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = weights_normalisation("IMAGENET1K_FEATURES", "vgg16")
    assert mean == (0.48235, 0.45882, 0.40784) and std == pytest.approx((1 / 255,) * 3)
    assert weights_normalisation(None, "resnet50") is None  # no weights: nothing to say
    assert weights_normalisation("/some/file.pth", "resnet50") is None  # a file says nothing
    # a card vtk ships
    card = weights_normalisation("camvid_deeplabv3plus_resnet18")
    assert card == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_timm_weights_tag_with_its_own_statistics_reaches_the_network(tmp_path) -> None:
    """timm's resnet18d.ra4 and mobilenetv4 ra4/e3000 weights were trained on mean 0.5, std 0.5,
    not ImageNet's: the backbone says so when it loads them, and the network reports it."""
    timm = pytest.importorskip("timm")
    from vtk.models import Classifier
    from vtk.models.backbones import TimmBackbone

    name = "mobilenetv4_conv_small_050.e3000_r224_in1k"
    torch.save(timm.create_model(name).state_dict(), tmp_path / "w.pth")
    backbone = TimmBackbone(name, out_indices=[3], weights=str(tmp_path / "w.pth"))
    assert backbone.weights_norm == HALF
    assert network_normalisation(Classifier(backbone, 3)) == HALF
    assert TimmBackbone(name, out_indices=[3]).weights_norm is None  # no weights loaded


def test_detectors_normalise_as_their_weights_unless_told() -> None:
    plain = FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 2)
    assert plain.transform.image_mean == list(IMAGENET_MEAN)  # no weights: ImageNet's
    backbone = ResNet("resnet18", out_indices=(1, 2, 3))
    backbone.weights_norm = HALF  # (what loading such weights sets)
    assert FCOS(backbone, 2).transform.image_mean == [0.5] * 3
    told = FCOS(backbone, 2, image_mean=[0.4, 0.4, 0.4], image_std=[0.2, 0.2, 0.2])
    assert told.transform.image_mean == [0.4] * 3 and told.transform.image_std == [0.2] * 3
    # SSD: torchvision's convention (Caffe) without backbone weights that say otherwise
    ssd = SSD(VGG("vgg16"), 3)
    assert ssd.transform.image_mean == [0.48235, 0.45882, 0.40784]
    vgg = VGG("vgg16")
    vgg.weights_norm = (IMAGENET_MEAN, IMAGENET_STD)  # torchvision's vgg16 "imagenet"
    assert SSD(vgg, 3).transform.image_mean == list(IMAGENET_MEAN)
