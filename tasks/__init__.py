"""The LightningModules, one per task (installed as ``vtk.tasks``)."""

from vtk.tasks.base import VisionTask
from vtk.tasks.binary import BinarySegmentationTask
from vtk.tasks.classification import ClassificationTask
from vtk.tasks.detection import DetectionTask
from vtk.tasks.multilabel import MultiLabelClassificationTask
from vtk.tasks.segmentation import SegmentationTask

__all__ = [
    "BinarySegmentationTask",
    "ClassificationTask",
    "DetectionTask",
    "MultiLabelClassificationTask",
    "SegmentationTask",
    "VisionTask",
]
