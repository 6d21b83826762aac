"""Image classification task: cross-entropy (optional label smoothing), top-1 / top-5 accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from vtk.callbacks import ClassificationWriter
from vtk.errors import ConfigError
from vtk.tasks.base import OptimizerFactory, SchedulerFactory, VisionTask


class ClassificationTask(VisionTask):
    """Train and evaluate an image classifier such as :class:`vtk.models.Classifier`.

    The model maps images to ``(B, num_classes)`` logits and has a ``num_classes`` attribute.

    Args:
        model: the classifier.
        optimizer: ``optimizer(params)``; default SGD (lr 0.01, momentum 0.9, wd 1e-4).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps)``, stepped every iteration, e.g.
            :class:`vtk.optim.WarmupCosineLR` or :class:`vtk.optim.WarmupMultiStepLR`.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016, §7; 0.1 typical).
        class_names: for the CSV of ``vtk predict`` (linked from the data).
        top_k: how many classes ``vtk predict`` writes per image.

    Logged: ``train/loss``, ``train/acc1``, ``train/lr``; ``val/loss``, ``val/acc1``,
    ``val/acc5``; the same under ``test/``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
        top_k: int = 5,
    ) -> None:
        super().__init__(model, optimizer, lr_scheduler)
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigError(
                f"{type(model).__name__} has no integer num_classes attribute; the classification "
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
        self.label_smoothing = label_smoothing
        self.top_k = min(top_k, num_classes)
        #: where ``vtk predict`` writes its CSV (``--output_dir``); default <run dir>/predictions
        self.output_dir: str | None = None
        metrics = MetricCollection(
            {
                "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            }
        )
        self.train_acc = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def configure_callbacks(self) -> list[Callback]:
        if not self.trainer.predicting:
            return []
        run_dir = self.trainer.log_dir or self.trainer.default_root_dir
        return [
            ClassificationWriter(
                self.output_dir or str(Path(run_dir) / "predictions"), self.class_names
            )
        ]

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (on_bad_image: skip)
            return None
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        self.train_acc(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc1", self.train_acc, on_step=True, on_epoch=False)
        self.log_lr()
        return loss

    def _evaluate(
        self, batch: dict[str, Any] | None, stage: str, metrics: MetricCollection
    ) -> None:
        if batch is None:
            return
        logits = self.model(batch["image"])
        metrics.update(logits, batch["label"])
        n = len(batch["label"])
        self.log(
            f"{stage}/loss", F.cross_entropy(logits, batch["label"]), batch_size=n, sync_dist=True
        )
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=n)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        if batch is None:
            return []
        scores, classes = torch.softmax(self.model(batch["image"]).float(), dim=1).topk(
            self.top_k, dim=1
        )
        return [
            {"id": i, "path": p, "classes": c.tolist(), "scores": s.tolist()}
            for i, p, c, s in zip(batch["id"], batch["path"], classes.cpu(), scores.cpu())
        ]
