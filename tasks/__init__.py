"""The LightningModules, one per task (installed as ``vtk.tasks``)."""

from .base import VisionTask
from .binary import BinarySegmentationTask
from .classification import ClassificationTask
from .detection import DetectionTask
from .multilabel import MultiLabelClassificationTask
from .segmentation import SegmentationTask

__all__ = [
    "BinarySegmentationTask",
    "ClassificationTask",
    "DetectionTask",
    "MultiLabelClassificationTask",
    "SegmentationTask",
    "VisionTask",
]
