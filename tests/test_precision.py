"""Mixed precision: every task trains a step under bf16 autocast (the CPU's; slow here, so tiny)
with the plug-ins that do their own arithmetic (attention softmax, ASFF weights, deformable
conv, non-local, STN): the losses and the weights stay finite."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from vtk.data import (
    DemoClassificationDataModule,
    DemoDetectionDataModule,
    DemoSegmentationDataModule,
)
from vtk.models import FCOS, ASFFNeck, Classifier, DeepLabV3Head, ResNet, Segmenter
from vtk.tasks import ClassificationTask, DetectionTask, SegmentationTask


class Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _classification():
    dm = DemoClassificationDataModule(image_size=32, batch_size=4, num_workers=0)
    backbone = ResNet("resnet18", attention="cbam", blur_pool=3, stn=True)
    return ClassificationTask(Classifier(backbone, dm.num_classes)), dm


def _segmentation():
    dm = DemoSegmentationDataModule(crop_size=48, batch_size=2, num_workers=0)
    backbone = ResNet(
        "resnet18", output_stride=16, attention="eca", non_local={3: [0]}, deform="v2",
        deform_stages=[3],
    )  # fmt: skip
    model = Segmenter(backbone, partial(DeepLabV3Head, atrous_rates=(2, 4, 6)), dm.num_classes)
    return SegmentationTask(model), dm


def _detection():
    dm = DemoDetectionDataModule(batch_size=2, num_workers=0)
    backbone = ResNet("resnet18", out_indices=(1, 2, 3), attention="se", deform="v1")
    # 128 px, not less: P6/P7 would be 1x1, and PyTorch's CPU bf16 conv weight gradient of a
    # stride-2 3x3 conv on a 1x1 input is non-finite about one time in four (PyTorch 2.14)
    model = FCOS(backbone, dm.num_classes, neck=ASFFNeck, min_size=128, max_size=128)
    return DetectionTask(model, category_ids=dm.category_ids), dm


@pytest.mark.parametrize("build", [_classification, _segmentation, _detection],
                         ids=["classification", "segmentation", "detection"])  # fmt: skip
def test_bf16_mixed_training_steps_are_finite(build) -> None:
    task, dm = build()
    losses = Losses()
    trainer = Trainer(
        accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=2, limit_val_batches=1, val_check_interval=2,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[losses],
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert len(losses.losses) == 2 and all(math.isfinite(v) for v in losses.losses)
    # and the steps left finite weights (a step with inf gradients would not show in its loss)
    assert all(torch.isfinite(p).all() for p in task.parameters())
