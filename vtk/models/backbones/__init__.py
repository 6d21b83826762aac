"""Backbones: ``forward(x) -> list[Tensor]`` plus ``feature_info`` (channels, stride).

One family class per file; its variants are data, chosen by ``arch``. In a recipe::

    backbone:
      class_path: vtk.models.backbones.ResNet
      init_args: {arch: resnet101, output_stride: 16, weights: imagenet, attention: se}

In Python, ``create_backbone(name, **kwargs)`` builds any variant by name.
"""

from __future__ import annotations

from typing import Any

from vtk import registry
from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.backbones.cifar_resnet import CifarResNet
from vtk.models.backbones.densenet import DenseNet
from vtk.models.backbones.resnet import ResNet
from vtk.models.backbones.timm_backbone import TimmBackbone
from vtk.models.backbones.unet_encoder import UNetEncoder
from vtk.models.backbones.vgg import VGG

#: Every backbone variant by name -> its family class (which takes ``arch=name``): the
#: registry's families (:data:`vtk.registry.BACKBONES`) and their variant tables.
BACKBONES: dict[str, type[Backbone]] = {}
for _family, _variants in registry.VARIANTS.items():
    for _name in registry.load(_variants):
        if _name in BACKBONES:
            raise RuntimeError(f"backbone name {_name!r} is defined twice")
        BACKBONES[_name] = registry.load(registry.BACKBONES[_family])


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
