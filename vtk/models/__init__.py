"""Plain ``torch.nn`` models (no Lightning here): backbones, necks, heads and task models."""

from vtk.models.backbones import Backbone, FeatureInfo, ResNet, create_backbone, list_backbones
from vtk.models.heads import DeepLabV3Head, DeepLabV3PlusHead, FCNHead
from vtk.models.necks import ASPP
from vtk.models.segmenter import Segmenter

__all__ = [
    "ASPP",
    "Backbone",
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "FCNHead",
    "FeatureInfo",
    "ResNet",
    "Segmenter",
    "create_backbone",
    "list_backbones",
]
