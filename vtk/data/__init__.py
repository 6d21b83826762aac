"""Datasets, albumentations pipelines, LightningDataModules and the embedded demo data.

The names below are imported when first used (PEP 562), so ``import vtk.data.io`` (image
reading: numpy and Pillow) does not pull in torch and Lightning: the torch-free ONNX runtime
(:mod:`vtk.deploy`) reads images with it.
"""

from __future__ import annotations

import importlib
from typing import Any

from vtk.registry import DATA

#: What vtk.data exports besides the DataModules the registry names (:data:`vtk.registry.DATA`):
#: the bases a DataModule derives from, the datasets, the demo writers; name -> module.
_OTHERS = {
    "VisionDataModule": "base",
    "ClassificationDataModule": "classification",
    "ClassificationDataset": "classification",
    "SegmentationDataModule": "segmentation",
    "SegmentationDataset": "segmentation",
    "make_demo_classification": "demo",
    "make_demo_segmentation": "demo",
}
_EXPORTS = {
    **{name: where.partition(":")[0].rpartition(".")[2] for name, where in DATA.items()},
    **_OTHERS,
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
