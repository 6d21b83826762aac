"""Task heads: take ``(in_channels, num_classes)`` first; channels come from ``feature_info``."""

from vtk.models.heads.classification import ClassificationHead, VGGHead
from vtk.models.heads.segmentation import DeepLabV3Head, DeepLabV3PlusHead, FCNHead
from vtk.models.heads.unet import UNetHead

__all__ = [
    "ClassificationHead", "DeepLabV3Head", "DeepLabV3PlusHead", "FCNHead", "UNetHead", "VGGHead"
]  # fmt: skip
