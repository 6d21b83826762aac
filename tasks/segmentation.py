"""Semantic segmentation task: cross-entropy (+ auxiliary loss), mIoU and pixel accuracy.

Metrics are torchmetrics' and accumulate a confusion matrix over the whole split, as VOC's
official mIoU does: a class that appears neither in the labels nor in the predictions of the
split is left out of the mean. Pixels labelled 255 are ignored everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from vtk.analysis import mask_object_sizes
from vtk.callbacks import SegmentationWriter
from vtk.data.segmentation import pad_stack
from vtk.data.transforms import IGNORE_INDEX
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
        category_ids: the dataset's own class ids (linked from the data).
        input_spec: normalisation and evaluation padding (linked from the data).

    Logged: ``train/loss`` (and ``train/aux_loss``), ``train/lr``; ``val/loss``, ``val/mIoU``,
    ``val/pixel_acc``; the same under ``test/`` plus ``test/IoU/<class>``. A prediction is
    ``{"labels"}``, an ``(H, W)`` class map at the image's own size.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        aux_weight: float = 0.4,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        input_spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, optimizer, lr_scheduler, class_names, category_ids, input_spec)
        self.aux_weight = aux_weight
        num_classes = self.num_classes
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

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.model(images)

    @staticmethod
    def pixel_loss(logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over the labelled pixels; a crop that is all "ignore" gives
        0, not NaN."""
        total = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (target != IGNORE_INDEX).sum().clamp(min=1)

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        out = self.model(batch["image"])
        losses = {"loss": self.pixel_loss(out["out"], batch["mask"])}
        if "aux" in out:
            losses["aux_loss"] = self.pixel_loss(out["aux"], batch["mask"])
            losses["loss"] = losses["loss"] + self.aux_weight * losses["aux_loss"]
        return losses

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> Tensor:
        logits = self.model(batch["image"])["out"]
        target = batch["mask"]
        preds = logits.argmax(dim=1)
        metrics.update(preds, target)
        self.log(
            f"{stage}/loss", self.pixel_loss(logits, target), batch_size=len(target),
            sync_dist=True,
        )  # fmt: skip
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
        """Class maps at each image's own size (images are padded at the bottom-right)."""
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        images = pad_stack(batch["image"], 0.0)  # 0: the mean colour after normalisation
        labels = self.model(images)["out"].argmax(dim=1).cpu().numpy()
        dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        return [
            {"id": i, "path": p, "labels": lab[:h, :w].astype(dtype)}
            for i, p, (h, w), lab in zip(batch["id"], batch["path"], batch["size"], labels)
        ]

    def prediction_writer(self, output_dir: Path) -> Callback:
        return SegmentationWriter(str(output_dir), self.num_classes)

    def export_spec(self, size: int) -> dict[str, Any]:
        return {**super().export_spec(size), "module": _Logits(self.model).eval()}

    def object_sizes(self, datamodule: Any) -> tuple[np.ndarray, str]:
        """The class regions of (up to 500) validation masks."""
        datamodule.setup("validate")
        dataset = datamodule.datasets["val"]
        n = min(len(dataset), 500)
        masks = [dataset[i]["mask"].numpy() for i in range(n)]
        return mask_object_sizes(masks), f"the class regions of {n} validation masks"


class _Logits(nn.Module):
    """A segmentation model's main output alone (what is exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]
