"""The LightningModules, one per task (installed as ``vtk.tasks``)."""

from vtk.tasks.base import VisionTask
from vtk.tasks.segmentation import SegmentationTask

__all__ = ["SegmentationTask", "VisionTask"]
