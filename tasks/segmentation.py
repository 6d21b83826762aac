"""Semantic segmentation task: cross-entropy (+ auxiliary loss), mIoU and pixel accuracy.

Metrics are torchmetrics' and accumulate a confusion matrix over the whole split, as VOC's
official mIoU does: a class that appears neither in the labels nor in the predictions of the
split is left out of the mean. Pixels labelled 255 are ignored everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from vtk.callbacks import SegmentationWriter
from vtk.data.transforms import IGNORE_INDEX
from vtk.errors import ConfigError
from vtk.tasks.base import OptimizerFactory, SchedulerFactory, VisionTask


class SegmentationTask(VisionTask):
    """Train and evaluate a segmentation model such as :class:`vtk.models.Segmenter`.

    The model maps images to ``{"out": logits}`` (plus ``"aux"`` in training when it has an
    auxiliary head) and has a ``num_classes`` attribute.

    Args:
        model: the segmentation model.
        optimizer: ``optimizer(params)``; default SGD (lr 0.01, momentum 0.9, wd 1e-4).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps)``; default poly (power 0.9).
        aux_weight: weight of the auxiliary head's loss (0.4 in torchvision's reference;
            PSPNet §4.1 uses 0.4 too).
        class_names: names for the per-class IoU of ``vtk test`` (linked from the data).

    Logged: ``train/loss`` (and ``train/aux_loss``), ``train/lr``; ``val/loss``, ``val/mIoU``,
    ``val/pixel_acc``; the same under ``test/`` plus ``test/IoU/<class>``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        aux_weight: float = 0.4,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, optimizer, lr_scheduler)
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigError(
                f"{type(model).__name__} has no integer num_classes attribute; the segmentation "
                "task needs one to size its metrics."
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(
                f"{len(class_names)} class names for a model with num_classes={num_classes}."
            )
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.aux_weight = aux_weight
        #: where ``vtk predict`` writes label maps (``--output_dir``); default <run dir>/predictions
        self.output_dir: str | None = None
        metrics = MetricCollection(
            {
                "mIoU": MulticlassJaccardIndex(
                    num_classes, average="macro", ignore_index=IGNORE_INDEX
                ),
                "pixel_acc": MulticlassAccuracy(
                    num_classes, average="micro", ignore_index=IGNORE_INDEX
                ),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # NaN, not 0, for a class absent from both labels and predictions
        self.test_class_iou = MulticlassJaccardIndex(
            num_classes, average="none", ignore_index=IGNORE_INDEX, zero_division=float("nan")
        )

    def configure_callbacks(self) -> list[Callback]:
        if not self.trainer.predicting:
            return []
        run_dir = self.trainer.log_dir or self.trainer.default_root_dir
        return [
            SegmentationWriter(
                self.output_dir or str(Path(run_dir) / "predictions"), self.num_classes
            )
        ]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.model(images)

    @staticmethod
    def _loss(logits: Tensor, target: Tensor) -> Tensor:
        # mean over labelled pixels; a crop that is all "ignore" gives 0, not NaN
        total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (target != IGNORE_INDEX).sum().clamp(min=1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self.model(batch["image"])
        loss = self._loss(out["out"], batch["mask"])
        if "aux" in out:
            aux_loss = self._loss(out["aux"], batch["mask"])
            self.log("train/aux_loss", aux_loss)
            loss = loss + self.aux_weight * aux_loss
        self.log("train/loss", loss, prog_bar=True)
        self.log_lr()
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> Tensor:
        logits = self.model(batch["image"])["out"]
        target = batch["mask"]
        preds = logits.argmax(dim=1)
        metrics.update(preds, target)
        self.log(
            f"{stage}/loss", self._loss(logits, target), batch_size=len(target), sync_dist=True
        )
        self.log_dict(metrics, prog_bar=stage == "val")
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds = self._evaluate(batch, "test", self.test_metrics)
        self.test_class_iou.update(preds, batch["mask"])

    def on_test_epoch_end(self) -> None:
        for name, iou in zip(self.class_names, self.test_class_iou.compute()):
            self.log(f"test/IoU/{name}", iou)  # already synchronised by torchmetrics
        self.test_class_iou.reset()

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        """Label maps at each image's own size (evaluation pads at the bottom-right)."""
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        labels = self.model(batch["image"])["out"].argmax(dim=1).to(torch.uint8)
        return [
            {"id": i, "path": p, "labels": lab[:h, :w].cpu()}
            for i, p, (h, w), lab in zip(batch["id"], batch["path"], batch["size"], labels)
        ]
