"""Multi-label image classification: any number of classes per image.

Sigmoid outputs with binary cross-entropy, or the asymmetric loss (ASL, Ridnik et al. 2021,
which down-weights the many easy negatives); per-class average precision and its mean (mAP,
torchmetrics), and F1 at a decision threshold chosen on the validation split (the one that
maximises the mean F1 over the classes, on a grid of 0.05 .. 0.95) and kept in the checkpoint:
``vtk test`` and prediction use it, so ``vtk predict`` returns every class scoring at or above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelStatScores

from vtk.callbacks import ClassificationWriter
from vtk.errors import ConfigError

from .base import VisionTask

#: the decision thresholds the validation chooses among
THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]


def asymmetric_loss(
    logits: Tensor, targets: Tensor, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
    clip: float = 0.05, focusing_grad: bool = False, reduction: str = "sum",
) -> Tensor:  # fmt: skip
    """ASL (Ridnik et al. 2021, eq. 7): ``-y (1-p)^g+ log p - (1-y) p_m^g- log(1 - p_m)`` with
    ``p_m = max(p - clip, 0)``, as the authors' released ``AsymmetricLoss`` (Alibaba-MIIL/ASL,
    ``src/loss_functions/losses.py``) trains with it: the focusing weights ``(1-p)^g+`` and
    ``p_m^g-`` are computed without gradient (their ``disable_torch_grad_focal_loss=True``;
    ``focusing_grad=True`` backpropagates through them) and the loss is summed over the classes
    and the images (``reduction="mean"``: averaged over the images). With both gammas and
    ``clip`` at 0 it is binary cross-entropy."""
    p = torch.sigmoid(logits if logits.dtype == torch.float64 else logits.float())
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p  # 1 - p_m
    eps = 1e-8
    loss = targets * torch.log(p.clamp(min=eps)) + (1 - targets) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(focusing_grad and torch.is_grad_enabled()):
            pt = p * targets + p_neg * (1 - targets)
            gamma = gamma_pos * targets + gamma_neg * (1 - targets)
            weight = torch.pow(1 - pt, gamma)
        loss = loss * weight
    total = -loss.sum()
    return total / len(logits) if reduction == "mean" else total


class MultiLabelClassificationTask(VisionTask):
    """Train and evaluate a multi-label classifier (a :class:`vtk.models.Classifier`: logits
    per class, read through a sigmoid).

    Args:
        model: the classifier.
        loss: ``bce`` (binary cross-entropy) or ``asl`` (asymmetric loss: ``asl_gamma_neg``,
            ``asl_gamma_pos``, ``asl_clip``; as the authors train with it, the focusing weights
            without gradient and the sum over the batch, unless ``asl_focusing_grad`` /
            ``asl_reduction: mean`` say otherwise).
        threshold: the decision threshold; None (default): chosen at every validation as the
            one with the best mean F1, and kept in the checkpoint.
        **kwargs: what every task takes (:class:`~vtk.tasks.VisionTask`: optimizer,
            lr_scheduler, class_names, input_spec, ...).

    Logged: ``train/loss``, ``train/lr``; ``val/loss``, ``val/mAP``, ``val/F1`` (mean over the
    classes at the threshold), ``val/threshold``, per class ``val/AP/<name>`` and
    ``val/F1/<name>``; the same under ``test/`` (at the validation's threshold). A prediction
    is ``{"labels", "names", "scores"}``: every class at or above the threshold, best first.
    """

    main_metric = ("val/mAP", "max")
    eval_options = ("threshold",)
    deploy_kind = "multilabel"  # sigmoid, every class at or above the threshold

    def deploy_metadata(self) -> dict[str, str]:
        return {**super().deploy_metadata(), "vtk.threshold": repr(self.threshold)}

    def __init__(
        self,
        model: nn.Module,
        loss: Literal["bce", "asl"] = "bce",
        threshold: float | None = None,
        asl_gamma_neg: float = 4.0,
        asl_gamma_pos: float = 0.0,
        asl_clip: float = 0.05,
        asl_focusing_grad: bool = False,
        asl_reduction: Literal["sum", "mean"] = "sum",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if loss not in ("bce", "asl"):
            raise ConfigError(f"loss is bce or asl, got {loss!r}.")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold is a probability in (0, 1), got {threshold}.")
        self.loss_kind, self.fixed_threshold = loss, threshold
        if asl_reduction not in ("sum", "mean"):
            raise ConfigError(f"asl_reduction is sum or mean, got {asl_reduction!r}.")
        self.asl = dict(gamma_neg=asl_gamma_neg, gamma_pos=asl_gamma_pos, clip=asl_clip,
                        focusing_grad=asl_focusing_grad, reduction=asl_reduction)  # fmt: skip
        # the validation's choice, saved in the checkpoint with the weights
        self.register_buffer("decision_threshold", torch.tensor(threshold or 0.5))
        k = self.num_classes
        self.val_ap = MultilabelAveragePrecision(k, average=None)
        self.test_ap = MultilabelAveragePrecision(k, average=None)
        self.val_stats = nn.ModuleList(
            MultilabelStatScores(k, threshold=t, average=None) for t in THRESHOLDS
        )
        self.test_stats = nn.ModuleList(
            MultilabelStatScores(k, threshold=t, average=None) for t in THRESHOLDS
        )

    @property
    def threshold(self) -> float:
        return float(self.fixed_threshold or self.decision_threshold)

    @threshold.setter
    def threshold(self, value: float | None) -> None:  # an evaluation option (--model.threshold)
        self.fixed_threshold = value

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.loss_kind == "asl":
            return asymmetric_loss(logits, targets, **self.asl)
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return {"loss": self._loss(self.model(batch["image"]), batch["label"])}

    def _evaluate(self, batch: dict[str, Any] | None, stage: str) -> None:
        if batch is None:
            return
        logits = self.model(batch["image"])
        targets = batch["label"]
        scores = torch.sigmoid(logits.float())
        (self.val_ap if stage == "val" else self.test_ap).update(scores, targets.long())
        for metric in self.val_stats if stage == "val" else self.test_stats:
            metric.update(scores, targets.long())
        self.log(
            f"{stage}/loss", self._loss(logits, targets), batch_size=len(targets), sync_dist=True
        )

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_scores(self, stage: str) -> None:
        ap_metric = self.val_ap if stage == "val" else self.test_ap
        ap = ap_metric.compute()
        ap_metric.reset()
        f1 = []
        for metric in self.val_stats if stage == "val" else self.test_stats:
            tp, fp, _, fn, _ = metric.compute().double().unbind(-1)
            metric.reset()
            f1.append(
                torch.where(
                    2 * tp + fp + fn > 0,
                    2 * tp / (2 * tp + fp + fn).clamp(min=1),
                    tp.new_tensor(float("nan")),
                )
            )
        f1 = torch.stack(f1)  # (thresholds, classes)
        if stage == "val" and self.fixed_threshold is None and not self.trainer.sanity_checking:
            best = int(torch.nan_to_num(f1.nanmean(1), nan=-1.0).argmax())
            self.decision_threshold.fill_(THRESHOLDS[best])
        chosen = min(range(len(THRESHOLDS)), key=lambda i: abs(THRESHOLDS[i] - self.threshold))
        self.log(f"{stage}/mAP", ap.nanmean().float(), prog_bar=stage == "val")
        self.log(f"{stage}/F1", f1[chosen].nanmean().float())
        self.log(f"{stage}/threshold", float(THRESHOLDS[chosen]))
        if self.num_classes <= 100:
            for name, a, f in zip(self.class_names, ap.float(), f1[chosen].float()):
                self.log(f"{stage}/AP/{name}", a)
                self.log(f"{stage}/F1/{name}", f)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        if batch is None:
            return []
        scores = torch.sigmoid(self.model(torch.stack(batch["image"])).float()).cpu()
        out = []
        for i, p, s in zip(batch["id"], batch["path"], scores):
            order = [
                k for k in torch.argsort(s, descending=True).tolist() if s[k] >= self.threshold
            ]
            out.append({"id": i, "path": p, "labels": order,
                        "names": [self.class_names[k] for k in order],
                        "scores": [float(s[k]) for k in order]})  # fmt: skip
        return out

    def prediction_writer(self, output_dir: Path) -> Callback:
        return ClassificationWriter(str(output_dir))
