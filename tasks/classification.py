"""Image classification task: cross-entropy (optional label smoothing), top-1 / top-5 accuracy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from torchvision.utils import make_grid

from vtk.callbacks import ClassificationWriter
from vtk.drawing import draw_classes, save
from vtk.metrics import classification_scores
from vtk.reports import confusion_figure, write_confusion_matrix

from .base import VisionTask

log = logging.getLogger("vtk")


class ClassificationTask(VisionTask):
    """Train and evaluate an image classifier such as :class:`vtk.models.Classifier`.

    The model maps images to ``(B, num_classes)`` logits and has a ``num_classes`` attribute.

    Args:
        model: the classifier.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016, §7; 0.1 typical).
        top_k: how many classes a prediction lists per image.
        **kwargs: what every task takes (:class:`~vtk.tasks.VisionTask`: optimizer,
            lr_scheduler — e.g. :class:`vtk.optim.WarmupCosineLR` —, class_names, input_spec:
            resize, crop and normalisation for prediction, ...).

    Logged: ``train/loss``, ``train/acc1``, ``train/lr``; ``val/loss``, ``val/acc1``,
    ``val/acc5``, ``val/acc_class`` (the mean of the classes' recall) and per class
    ``val/precision/<name>`` and ``val/recall/<name>`` (the class's accuracy; up to
    :attr:`per_class_logged` classes), from one
    confusion matrix over the split (:func:`~vtk.metrics.classification_scores`); the same under
    ``test/``. ``vtk test`` writes ``confusion_matrix.csv`` / ``.png`` (counts; colours the row
    shares) and ``mistakes.png``: the :attr:`mistakes_shown` most confident wrong predictions,
    each labelled with the predicted class, its score and the true class; with a
    TensorBoard logger the matrix (every validation) and the mistakes go there too. A
    prediction is ``{"labels", "names", "scores"}`` (the top-k classes).
    """

    #: how many of the most confident mistakes ``vtk test`` draws
    mistakes_shown: int = 16
    #: per-class metrics are logged up to this many classes (above, the confusion matrix file
    #: holds them)
    per_class_logged: int = 100

    main_metric = ("val/acc1", "max")
    deploy_kind = "classification"  # softmax, the top_k classes

    def deploy_metadata(self) -> dict[str, str]:
        return {**super().deploy_metadata(), "vtk.top_k": str(self.top_k)}

    def __init__(
        self,
        model: nn.Module,
        label_smoothing: float = 0.0,
        top_k: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
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
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self._mistakes: list[tuple[float, Tensor, int, int]] = []  # (score, image, true, pred)

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
        labels = batch["label"]  # soft targets under MixUp / CutMix: their main class
        self.train_acc(logits, labels.argmax(1) if labels.ndim == 2 else labels)
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
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        confusion.update(logits.argmax(1), batch["label"])
        if stage == "test":
            self._keep_mistakes(batch["image"], logits, batch["label"])
        n = len(batch["label"])
        self.log(
            f"{stage}/loss", F.cross_entropy(logits, batch["label"]), batch_size=n, sync_dist=True
        )
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=n)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _keep_mistakes(self, images: Tensor, logits: Tensor, labels: Tensor) -> None:
        """The most confident wrong predictions so far (this process's share of the split)."""
        scores, predicted = torch.softmax(logits.detach().float(), 1).max(1)
        for i in torch.nonzero(predicted != labels).flatten().tolist():
            self._mistakes.append(
                (
                    float(scores[i]),
                    images[i].detach().float().cpu(),
                    int(labels[i]),
                    int(predicted[i]),
                )
            )
        self._mistakes = sorted(self._mistakes, key=lambda m: -m[0])[: self.mistakes_shown]

    def _log_scores(self, stage: str, confusion: MulticlassConfusionMatrix) -> np.ndarray:
        """Per-class precision and recall from the split's matrix (summed across processes)."""
        matrix = confusion.compute()
        confusion.reset()
        scores = classification_scores(matrix)
        self.log(f"{stage}/acc_class", scores["acc_class"].float())
        if self.num_classes > self.per_class_logged:  # ImageNet: 2,000 columns; see the CSV
            return matrix.cpu().numpy()
        for key in ("precision", "recall"):
            for name, value in zip(self.class_names, scores[key].float()):
                self.log(f"{stage}/{key}/{name}", value)
        return matrix.cpu().numpy()

    def on_validation_epoch_end(self) -> None:
        matrix = self._log_scores("val", self.val_confusion)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._tensorboard_figure("val/confusion_matrix", matrix)

    def on_test_epoch_start(self) -> None:
        self._mistakes = []

    def on_test_epoch_end(self) -> None:
        matrix = self._log_scores("test", self.test_confusion)
        if not self.trainer.is_global_zero:
            return
        folder = self.output_path(".")
        write_confusion_matrix(matrix, self.class_names, folder, unit="images")
        self._tensorboard_figure("test/confusion_matrix", matrix)
        if self._mistakes:
            grid = self._mistakes_grid()
            save(grid, folder / "mistakes.png")
            log.info(
                "wrote %s: the %d most confident mistakes", folder / "mistakes.png",
                len(self._mistakes),
            )  # fmt: skip
            writer = self._tensorboard()
            if writer is not None:
                writer.add_image("test/mistakes", grid, self.global_step)

    def _mistakes_grid(self) -> Tensor:
        spec = self.input_spec
        cells = []
        for score, image, true, predicted in self._mistakes:
            if spec.mean is not None and spec.std is not None:
                image = image * torch.tensor(spec.std).view(3, 1, 1) + torch.tensor(spec.mean).view(
                    3, 1, 1
                )
            pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
            pixels = F.interpolate(pixels[None].float(), size=(128, 128), mode="bilinear")[0]
            label = [f"{self.class_names[predicted]} (true: {self.class_names[true]})"]
            cells.append(draw_classes(pixels.round().to(torch.uint8), label, [score]))
        return make_grid(cells, nrow=4, padding=2)

    def _tensorboard(self) -> Any:
        """The TensorBoard writer of the run's logger, or None."""
        for logger in self.loggers:
            if type(logger).__name__ == "TensorBoardLogger":
                return logger.experiment
        return None

    def _tensorboard_figure(self, tag: str, matrix: np.ndarray) -> None:
        writer = self._tensorboard()
        if writer is not None:
            writer.add_figure(
                tag, confusion_figure(matrix, self.class_names, "images"), self.global_step
            )

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
