"""Binary segmentation as the medical literature scores it (retinal vessels, lesions, cells):
two classes, background and the foreground, read as the foreground's probability.

Scores are those of the foreground over the scored pixels only (a region of interest's outside
is ``ignore_index``, see :class:`~vtk.data.DRIVEDataModule`): F1 (Dice), sensitivity,
specificity, accuracy and precision at the decision threshold, and the area under the ROC curve
from the probabilities (torchmetrics' exact ``BinaryAUROC``). Over a split the pixels of every
image are pooled, as DRIVE's tables report; ``vtk test`` also writes each image's scores
(``per_image.csv``).

The threshold is chosen at every validation, as the one with the best F1 on a grid of 0.01 ..
0.99, and kept in the checkpoint (a buffer, as multi-label's); ``vtk test``, ``vtk predict``,
``vtk.load`` and the exported ONNX model use it (``--model.threshold`` sets one instead).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.classification import BinaryAUROC
from torchmetrics.functional.classification import binary_auroc

from vtk.errors import ConfigError
from vtk.metrics import BinaryThresholdCounts, binary_scores

from .segmentation import SegmentationTask

#: the decision thresholds the validation chooses among
THRESHOLDS = [k / 100 for k in range(1, 100)]
#: what is logged, at the threshold
SCORES = ("F1", "sensitivity", "specificity", "acc", "precision")


class BinarySegmentationTask(SegmentationTask):
    """Train and evaluate a two-class segmentation model (a :class:`vtk.models.Segmenter` with
    ``num_classes`` 2) and report the foreground's scores (see the module docs).

    Args:
        threshold: the foreground probability at or above which a pixel is foreground; None
            (default): chosen on the validation split and kept in the checkpoint.
        foreground: the foreground's class index (1).
        **kwargs: as :class:`~vtk.tasks.SegmentationTask` (``model``, ``losses``,
            ``optimizer``, ``lr_scheduler``, ``eval_mode``, ...).

    Logged: ``train/loss``; ``val/loss``, ``val/F1``, ``val/sensitivity``, ``val/specificity``,
    ``val/acc``, ``val/precision``, ``val/AUC``, ``val/threshold``; the same under ``test/``
    (at the validation's threshold). A prediction is ``{"labels"}``: an ``(H, W)`` map of 0 and
    1 (the foreground's index) at the image's size.
    """

    main_metric = ("val/F1", "max")
    eval_options = (*SegmentationTask.eval_options, "threshold")

    def __init__(self, threshold: float | None = None, foreground: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.num_classes != 2:
            raise ConfigError(
                f"BinarySegmentationTask scores a foreground against a background: num_classes "
                f"must be 2, the model has {self.num_classes}."
            )
        if foreground not in (0, 1):
            raise ConfigError(f"foreground is a class index, 0 or 1, got {foreground}.")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold is a probability in (0, 1), got {threshold}.")
        self.foreground = foreground
        self.fixed_threshold = threshold
        self.register_buffer("decision_threshold", torch.tensor(threshold or 0.5))
        self.val_counts = BinaryThresholdCounts(THRESHOLDS)
        self.test_counts = BinaryThresholdCounts(THRESHOLDS)
        self.val_auroc = BinaryAUROC()
        self.test_auroc = BinaryAUROC()
        self._per_image: list[dict[str, Any]] = []

    @property
    def threshold(self) -> float:
        return float(self.fixed_threshold or self.decision_threshold)

    @threshold.setter
    def threshold(self, value: float | None) -> None:  # an evaluation option (--model.threshold)
        self.fixed_threshold = value

    def probabilities(self, logits: Tensor) -> Tensor:
        """The foreground's probability from ``(..., 2, H, W)`` logits."""
        return torch.softmax(logits.float(), dim=-3)[..., self.foreground, :, :]

    def decide(self, logits: Tensor) -> Tensor:
        """``(..., 2, H, W)`` logits -> class indices at the threshold."""
        fg = self.probabilities(logits) >= self.threshold
        return torch.where(fg, self.foreground, 1 - self.foreground)

    # -- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any] | None, stage: str) -> None:
        if batch is None:
            return
        counts = self.val_counts if stage == "val" else self.test_counts
        auroc = self.val_auroc if stage == "val" else self.test_auroc
        losses = []
        for logits, mask, name in zip(
            self.logits(batch["image"], augment=stage == "test"), batch["mask"], batch["id"]
        ):
            losses.append(self.pixel_loss(logits[None], mask[None])["loss"])
            scored = mask != self.ignore_index
            probs = self.probabilities(logits)[scored]
            target = (mask[scored] == self.foreground).long()
            counts.update(probs, target)
            auroc.update(probs, target)
            if stage == "test":
                self._per_image.append(self._image_scores(str(name), probs, target))
        n = len(losses)
        self.log(f"{stage}/loss", torch.stack(losses).mean(), batch_size=n, sync_dist=True)

    def _image_scores(self, name: str, probs: Tensor, target: Tensor) -> dict[str, Any]:
        positive = probs >= self.threshold
        truth = target.bool()
        tp, fp = int((positive & truth).sum()), int((positive & ~truth).sum())
        fn, tn = int((~positive & truth).sum()), int((~positive & ~truth).sum())
        scores = binary_scores(torch.tensor([tp, fp, tn, fn]))
        auc = float(binary_auroc(probs, target)) if 0 < truth.sum() < truth.numel() else math.nan
        return {"image": name, **{k: round(float(v), 4) for k, v in scores.items()},
                "AUC": round(auc, 4), "pixels": truth.numel()}  # fmt: skip

    def _log_binary(self, stage: str, counts: BinaryThresholdCounts, auroc: BinaryAUROC) -> None:
        table = counts.compute()
        counts.reset()
        scores = binary_scores(table)
        if stage == "val" and self.fixed_threshold is None and not self.trainer.sanity_checking:
            self.decision_threshold.fill_(THRESHOLDS[int(scores["F1"].argmax())])
        k = min(range(len(THRESHOLDS)), key=lambda i: abs(THRESHOLDS[i] - self.threshold))
        for key in SCORES:
            self.log(f"{stage}/{key}", scores[key][k].float(), prog_bar=key == "F1")
        self.log(f"{stage}/AUC", auroc.compute().float())
        auroc.reset()
        self.log(f"{stage}/threshold", float(THRESHOLDS[k]))

    def on_validation_epoch_end(self) -> None:
        self._log_binary("val", self.val_counts, self.val_auroc)

    def on_test_epoch_start(self) -> None:
        self._per_image = []

    def on_test_epoch_end(self) -> None:
        self._log_binary("test", self.test_counts, self.test_auroc)
        rows = self._per_image
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if self.trainer.is_global_zero and rows:
            write_per_image(rows, self.output_path("."))

    # -- prediction and export ------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        """Maps of 0 / 1 at each image's own size, at the threshold."""
        if batch is None:
            return []
        return [
            {"id": i, "path": p, "labels": self.decide(logits).cpu().numpy().astype("uint8")}
            for i, p, logits in zip(
                batch["id"], batch["path"], self.logits(batch["image"], augment=True)
            )
        ]

    def export_spec(self, size: int) -> dict[str, Any]:
        """The exported logits carry the threshold: the foreground's logit is shifted by the
        threshold's log-odds, so their arg-max (what every runtime takes) is the decision at
        the threshold."""
        shift = math.log(self.threshold / (1 - self.threshold))
        module = _ThresholdedLogits(self.model, self.foreground, shift)
        return {**super().export_spec(size), "module": module.eval()}


class _ThresholdedLogits(nn.Module):
    def __init__(self, model: nn.Module, foreground: int, shift: float) -> None:
        super().__init__()
        self.model = model
        offset = torch.zeros(2)
        offset[foreground] = -shift
        self.register_buffer("offset", offset.view(1, 2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"] + self.offset


def write_per_image(rows: list[dict[str, Any]], folder: Path) -> None:
    """``per_image.csv``: each test image's scores, sorted by name."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: r["image"])
    with open(folder / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
