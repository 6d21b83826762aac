"""Backbones: ``forward(x) -> list[Tensor]`` plus ``feature_info`` (channels, stride).

``create_backbone(name, **kwargs)`` builds any variant by name; in a recipe, give the family
class and its ``arch``::

    backbone:
      class_path: vtk.models.backbones.ResNet
      init_args: {arch: resnet101, output_stride: 16, weights: imagenet}
"""

from __future__ import annotations

from typing import Any

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.backbones.resnet import RESNET_ARCHS, ResNet

#: Every backbone variant by name -> its family class (which takes ``arch=name``).
BACKBONES: dict[str, type[Backbone]] = {name: ResNet for name in RESNET_ARCHS}


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


__all__ = ["BACKBONES", "Backbone", "FeatureInfo", "ResNet", "create_backbone", "list_backbones"]
