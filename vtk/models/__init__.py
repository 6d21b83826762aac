"""Plain ``torch.nn`` models (no Lightning here): backbones, necks, heads and task models."""

from vtk.models.atss import ATSS
from vtk.models.backbones import (
    VGG,
    Backbone,
    CifarResNet,
    DenseNet,
    FeatureInfo,
    ResNet,
    create_backbone,
    list_backbones,
)
from vtk.models.classifier import Classifier
from vtk.models.detector import FCOS, RetinaNet
from vtk.models.heads import ClassificationHead, DeepLabV3Head, DeepLabV3PlusHead, FCNHead, VGGHead
from vtk.models.necks import ASPP, FPN, ASFFNeck, RFBNeck
from vtk.models.segmenter import Segmenter
from vtk.models.ssd import SSD

__all__ = [
    "ASPP",
    "ATSS",
    "FCOS",
    "FPN",
    "SSD",
    "VGG",
    "ASFFNeck",
    "Backbone",
    "CifarResNet",
    "ClassificationHead",
    "Classifier",
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "DenseNet",
    "FCNHead",
    "FeatureInfo",
    "RFBNeck",
    "ResNet",
    "RetinaNet",
    "Segmenter",
    "VGGHead",
    "create_backbone",
    "list_backbones",
]
