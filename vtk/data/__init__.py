"""Datasets, albumentations pipelines, LightningDataModules and the embedded demo data."""

from vtk.data.demo import DemoSegmentationDataModule, make_demo_segmentation
from vtk.data.segmentation import (
    MaskFolderDataModule,
    SegmentationDataModule,
    SegmentationDataset,
    VOCSegmentationDataModule,
)

__all__ = [
    "DemoSegmentationDataModule",
    "MaskFolderDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "VOCSegmentationDataModule",
    "make_demo_segmentation",
]
