"""Datasets, albumentations pipelines, LightningDataModules and the embedded demo data."""

from vtk.data.base import PredictFolderDataModule, VisionDataModule
from vtk.data.classification import (
    CIFAR10DataModule,
    ClassificationDataModule,
    ClassificationDataset,
    ImageFolderDataModule,
)
from vtk.data.demo import (
    DemoClassificationDataModule,
    DemoDetectionDataModule,
    DemoSegmentationDataModule,
    make_demo_classification,
    make_demo_segmentation,
)
from vtk.data.detection import CocoDetectionDataModule
from vtk.data.segmentation import (
    ADE20KDataModule,
    CamVidDataModule,
    CityscapesDataModule,
    MaskFolderDataModule,
    SegmentationDataModule,
    SegmentationDataset,
    VOCSegmentationDataModule,
)

__all__ = [
    "ADE20KDataModule",
    "CIFAR10DataModule",
    "CamVidDataModule",
    "CityscapesDataModule",
    "ClassificationDataModule",
    "ClassificationDataset",
    "CocoDetectionDataModule",
    "DemoClassificationDataModule",
    "DemoDetectionDataModule",
    "DemoSegmentationDataModule",
    "ImageFolderDataModule",
    "MaskFolderDataModule",
    "PredictFolderDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentationDataModule",
    "VisionDataModule",
    "make_demo_classification",
    "make_demo_segmentation",
]
