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
        class_names: for results and drawings (linked from the data).
        top_k: how many classes a prediction lists per image.
        category_ids: the dataset's own class ids (linked from the data).
        input_spec: resize, crop and normalisation for prediction (linked from the data).
        backbone_lr_mult, norm_bias_decay: per-group LR and weight decay (see
            :class:`~vtk.tasks.VisionTask`).
        channels_last, compile_model, nonfinite_skips: NHWC and compiled training; what a
            non-finite loss does (see :class:`~vtk.tasks.VisionTask`).

    Logged: ``train/loss``, ``train/acc1``, ``train/lr``; ``val/loss``, ``val/acc1``,
    ``val/acc5``; the same under ``test/``. A prediction is ``{"labels", "names", "scores"}``
    (the top-k classes).
    """

    main_metric = ("val/acc1", "max")

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
        top_k: int = 5,
        category_ids: Sequence[int] | None = None,
        input_spec: dict[str, Any] | None = None,
        backbone_lr_mult: float = 1.0,
        norm_bias_decay: bool = True,
        channels_last: bool = False,
        nonfinite_skips: int = 0,
        compile_model: bool = False,
    ) -> None:
        super().__init__(
            model, optimizer, lr_scheduler, class_names, category_ids, input_spec,
            backbone_lr_mult, norm_bias_decay, channels_last, nonfinite_skips, compile_model,
        )  # fmt: skip
        self.label_smoothing = label_smoothing
        self.top_k = min(top_k, self.num_classes)
        metrics = MetricCollection(
            {
                "acc1": MulticlassAccuracy(self.num_classes, top_k=1, average="micro"),
                "acc5": MulticlassAccuracy(
                    self.num_classes, top_k=min(5, self.num_classes), average="micro"
                ),
            }
        )
        self.train_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return {"loss": self._loss(self.model(batch["image"]), batch["label"])}

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (on_bad_image: skip)
            return None
        logits = self.model(batch["image"])
        loss = self._loss(logits, batch["label"])
        self.remember_losses({"loss": loss})
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
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        logits = self.model(torch.stack(batch["image"]))
        scores, labels = torch.softmax(logits.float(), dim=1).topk(self.top_k, dim=1)
        return [
            {
                "id": i,
                "path": p,
                "labels": c.tolist(),
                "names": [self.class_names[k] for k in c.tolist()],
                "scores": s.tolist(),
            }
            for i, p, c, s in zip(batch["id"], batch["path"], labels.cpu(), scores.cpu())
        ]

    def prediction_writer(self, output_dir: Path) -> Callback:
        return ClassificationWriter(str(output_dir))
