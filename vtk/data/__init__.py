"""Datasets, albumentations pipelines, LightningDataModules and the embedded demo data.

The names below are imported when first used (PEP 562), so ``import vtk.data.io`` (image
reading: numpy and Pillow) does not pull in torch and Lightning: the torch-free ONNX runtime
(:mod:`vtk.deploy`) reads images with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PredictFolderDataModule": "base",
    "VisionDataModule": "base",
    "CIFAR10DataModule": "classification",
    "ClassificationDataModule": "classification",
    "ClassificationDataset": "classification",
    "ImageFolderDataModule": "classification",
    "DemoClassificationDataModule": "demo",
    "DemoDetectionDataModule": "demo",
    "DemoSegmentationDataModule": "demo",
    "DRIVEDataModule": "drive",
    "make_demo_classification": "demo",
    "make_demo_segmentation": "demo",
    "CocoDetectionDataModule": "detection",
    "DemoMultiLabelDataModule": "multilabel",
    "MultiLabelDataModule": "multilabel",
    "YOLODataModule": "detection",
    "ADE20KDataModule": "segmentation_layouts",
    "CamVidDataModule": "segmentation_layouts",
    "CityscapesDataModule": "segmentation_layouts",
    "MaskFolderDataModule": "segmentation",
    "SegmentationDataModule": "segmentation",
    "SegmentationDataset": "segmentation",
    "VOCSegmentationDataModule": "segmentation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vtk.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vtk.data.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
