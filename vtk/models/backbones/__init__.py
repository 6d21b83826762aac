"""Backbones: ``forward(x) -> list[Tensor]`` plus ``feature_info`` (channels, stride).

One family class per file; its variants are data, chosen by ``arch``. In a recipe::

    backbone:
      class_path: vtk.models.backbones.ResNet
      init_args: {arch: resnet101, output_stride: 16, weights: imagenet, attention: se}

In Python, ``create_backbone(name, **kwargs)`` builds any variant by name.
"""

from __future__ import annotations

from typing import Any

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.backbones.cifar_resnet import CIFAR_RESNET_ARCHS, CifarResNet
from vtk.models.backbones.densenet import DENSENET_ARCHS, DenseNet
from vtk.models.backbones.resnet import RESNET_ARCHS, ResNet
from vtk.models.backbones.timm_backbone import TimmBackbone
from vtk.models.backbones.unet_encoder import UNET_ARCHS, UNetEncoder
from vtk.models.backbones.vgg import VGG, VGG_ARCHS

#: Every backbone variant by name -> its family class (which takes ``arch=name``).
BACKBONES: dict[str, type[Backbone]] = {}
for _family, _archs in (
    (ResNet, RESNET_ARCHS),
    (CifarResNet, CIFAR_RESNET_ARCHS),
    (VGG, VGG_ARCHS),
    (DenseNet, DENSENET_ARCHS),
    (UNetEncoder, UNET_ARCHS),
):
    for _name in _archs:
        if _name in BACKBONES:
            raise RuntimeError(f"backbone name {_name!r} is defined twice")
        BACKBONES[_name] = _family


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build the backbone variant ``name`` (e.g. ``"resnet50"``) with the family's arguments."""
    try:
        family = BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; valid names: {', '.join(list_backbones())}"
        ) from None
    return family(name, **kwargs)


__all__ = [
    "BACKBONES",
    "VGG",
    "Backbone",
    "CifarResNet",
    "DenseNet",
    "FeatureInfo",
    "ResNet",
    "TimmBackbone",
    "UNetEncoder",
    "create_backbone",
    "list_backbones",
]
