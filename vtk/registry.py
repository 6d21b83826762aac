"""Every part a recipe can name, one table per kind: a name and where the part is
(``"module:attribute"``, imported only when the part is used).

Registering a part is one line in its kind's table below, the same for every kind. What lists
or resolves parts reads these tables:

* ``vtk list`` (:mod:`vtk.catalog`), without importing torch: this module imports nothing;
* the packages' own lookups: a backbone's ``attention: se`` and ``deform: v2``
  (:data:`vtk.models.attention.ATTENTION`, :data:`vtk.models.layers.DEFORM_CONV`),
  ``create_backbone("resnet50")`` (the families' variant tables), ``vtk.data``'s lazy names;
* the tests: every registered part loads, every class a package exports is registered, and the
  documentation names every part (``tests/test_registry.py``).

A recipe names a part by its class path (``class_path: vtk.models.FCOS``), a plug-in by its name
here (``attention: cbam``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Backbone families (``class_path: vtk.models.backbones.<Family>``); each family's variants
#: (its ``arch`` names) are the table :data:`VARIANTS` names.
BACKBONES = {
    "ResNet": "vtk.models.backbones.resnet:ResNet",
    "CifarResNet": "vtk.models.backbones.cifar_resnet:CifarResNet",
    "VGG": "vtk.models.backbones.vgg:VGG",
    "DenseNet": "vtk.models.backbones.densenet:DenseNet",
    "UNetEncoder": "vtk.models.backbones.unet_encoder:UNetEncoder",
    "TimmBackbone": "vtk.models.backbones.timm_backbone:TimmBackbone",
}
#: Each family's variant table (``arch`` name -> its configuration), where it has one.
VARIANTS = {
    "ResNet": "vtk.models.backbones.resnet:RESNET_ARCHS",
    "CifarResNet": "vtk.models.backbones.cifar_resnet:CIFAR_RESNET_ARCHS",
    "VGG": "vtk.models.backbones.vgg:VGG_ARCHS",
    "DenseNet": "vtk.models.backbones.densenet:DENSENET_ARCHS",
    "UNetEncoder": "vtk.models.backbones.unet_encoder:UNET_ARCHS",
}
#: In-block attention, by the name a backbone's ``attention`` argument takes (each takes its
#: channel count first).
ATTENTION = {
    "se": "vtk.models.attention.se:SqueezeExcite",
    "cbam": "vtk.models.attention.cbam:CBAM",
    "eca": "vtk.models.attention.eca:ECA",
    "gc": "vtk.models.attention.gc:GlobalContext",
}
#: Deformable convolutions, by the name a backbone's ``deform`` argument takes.
DEFORM_CONV = {
    "v1": "vtk.models.layers.deform_conv:deform_conv_v1",
    "v2": "vtk.models.layers.deform_conv:deform_conv_v2",
}
#: Necks (``neck:`` of a detector or segmenter), called with the backbone's channels (and strides).
NECKS = {
    "FPN": "vtk.models.necks.fpn:FPN",
    "ASFFNeck": "vtk.models.necks.asff:ASFFNeck",
    "RFBNeck": "vtk.models.necks.rfb:RFBNeck",
    "ASPP": "vtk.models.necks.aspp:ASPP",
}
#: Heads (``head:`` of a classifier or segmenter), called with the channels before them.
HEADS = {
    "ClassificationHead": "vtk.models.heads.classification:ClassificationHead",
    "VGGHead": "vtk.models.heads.classification:VGGHead",
    "FCNHead": "vtk.models.heads.segmentation:FCNHead",
    "DeepLabV3Head": "vtk.models.heads.segmentation:DeepLabV3Head",
    "DeepLabV3PlusHead": "vtk.models.heads.segmentation:DeepLabV3PlusHead",
    "UNetHead": "vtk.models.heads.unet:UNetHead",
}
#: A task's network (``model.init_args.model``).
MODELS = {
    "Classifier": "vtk.models.classifier:Classifier",
    "Segmenter": "vtk.models.segmenter:Segmenter",
    "FCOS": "vtk.models.detector:FCOS",
    "RetinaNet": "vtk.models.detector:RetinaNet",
    "ATSS": "vtk.models.atss:ATSS",
    "SSD": "vtk.models.ssd:SSD",
}
#: The tasks (``model:`` of a recipe).
TASKS = {
    "ClassificationTask": "vtk.tasks.classification:ClassificationTask",
    "MultiLabelClassificationTask": "vtk.tasks.multilabel:MultiLabelClassificationTask",
    "SegmentationTask": "vtk.tasks.segmentation:SegmentationTask",
    "BinarySegmentationTask": "vtk.tasks.binary:BinarySegmentationTask",
    "DetectionTask": "vtk.tasks.detection:DetectionTask",
}
#: The DataModules (``data:`` of a recipe).
DATA = {
    "ImageFolderDataModule": "vtk.data.classification:ImageFolderDataModule",
    "CIFAR10DataModule": "vtk.data.classification:CIFAR10DataModule",
    "MultiLabelDataModule": "vtk.data.multilabel:MultiLabelDataModule",
    "MaskFolderDataModule": "vtk.data.segmentation:MaskFolderDataModule",
    "VOCSegmentationDataModule": "vtk.data.segmentation:VOCSegmentationDataModule",
    "CamVidDataModule": "vtk.data.segmentation_layouts:CamVidDataModule",
    "CityscapesDataModule": "vtk.data.segmentation_layouts:CityscapesDataModule",
    "ADE20KDataModule": "vtk.data.segmentation_layouts:ADE20KDataModule",
    "DRIVEDataModule": "vtk.data.drive:DRIVEDataModule",
    "CocoDetectionDataModule": "vtk.data.detection:CocoDetectionDataModule",
    "YOLODataModule": "vtk.data.yolo:YOLODataModule",
    "DemoClassificationDataModule": "vtk.data.demo:DemoClassificationDataModule",
    "DemoMultiLabelDataModule": "vtk.data.multilabel:DemoMultiLabelDataModule",
    "DemoSegmentationDataModule": "vtk.data.demo:DemoSegmentationDataModule",
    "DemoDetectionDataModule": "vtk.data.demo:DemoDetectionDataModule",
    "PredictFolderDataModule": "vtk.data.base:PredictFolderDataModule",
}

#: Every kind, by the name ``vtk list`` and the tests use.
KINDS: dict[str, dict[str, str]] = {
    "backbone": BACKBONES,
    "attention": ATTENTION,
    "deform": DEFORM_CONV,
    "neck": NECKS,
    "head": HEADS,
    "model": MODELS,
    "task": TASKS,
    "data": DATA,
}


def load(where: str) -> Any:
    """The object at ``"module:attribute"`` (its module imported)."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


def table(kind: str) -> dict[str, Any]:
    """A kind's parts, loaded: name -> object, in registration order."""
    return {name: load(where) for name, where in KINDS[kind].items()}
