"""Semantic segmentation task: pixel losses (+ auxiliary loss), mIoU and pixel accuracy, every
image evaluated at its own size.

Metrics are read from one confusion matrix over the whole split (torchmetrics', summed across
processes), as VOC's official mIoU and SegNet's accuracies are: a class that appears neither in
the labels nor in the predictions of the split is left out of the mIoU, a class absent from the
labels out of the class-average accuracy (:func:`vtk.metrics.segmentation_scores`). Pixels
labelled ``ignore_index`` are ignored everywhere.

Evaluation and prediction run the network on each image at its own size, so a score depends
neither on the training crop nor on which images share a batch: ``eval_mode: whole`` (the
image padded to a multiple of 32, the logits cut back) or ``slide`` (overlapping ``window``
crops ``stride`` apart, logits averaged; for large images), see :mod:`vtk.models.inference`.
``vtk test``, ``vtk predict`` and ``vtk.load`` add test-time augmentation with ``tta_scales``
and ``tta_flip`` (logits of rescaled and mirrored copies averaged at the image's size).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from vtk.callbacks import SegmentationWriter
from vtk.data.masks import mask_object_sizes
from vtk.errors import ConfigError, DataError
from vtk.losses import CrossEntropyLoss, PixelLoss
from vtk.metrics import segmentation_scores
from vtk.models import inference
from vtk.reports import write_confusion_matrix
from vtk.spec import IGNORE_INDEX

from .base import VisionTask

log = logging.getLogger("vtk")


class SegmentationTask(VisionTask):
    """Train and evaluate a segmentation model such as :class:`vtk.models.Segmenter`.

    The model maps images to ``{"out": logits}`` (plus ``"aux"`` in training when it has an
    auxiliary head) at the input's size and has a ``num_classes`` attribute.

    Args:
        model: the segmentation model.
        aux_weight: weight of the auxiliary head's loss (0.4 in torchvision's reference;
            PSPNet §4.1 uses 0.4 too).
        losses: pixel loss terms summed with their weights (:mod:`vtk.losses`); default
            cross-entropy.
        eval_mode: ``whole`` or ``slide`` (see the module docs).
        window, stride: ``slide``'s window and step, a side or (height, width).
        slide_batch: windows run at once (memory holds one such batch).
        tta_scales, tta_flip: test-time augmentation for test and prediction (DeepLabv3's
            multi-scale + flip: ``[0.5, 0.75, 1.0, 1.25, 1.5, 1.75]`` and ``true``).
            These evaluation arguments (:attr:`eval_options`) come from the recipe and command
            line of a ``vtk validate/test/predict`` run, also with ``--ckpt_path``.
        ignore_index: the label of unscored pixels (linked from the data; 255 by default).
        **kwargs: what every task takes (:class:`~vtk.tasks.VisionTask`: optimizer — default
            SGD (lr 0.01, momentum 0.9, wd 1e-4) —, lr_scheduler — default poly (power 0.9) —,
            class_names for the per-class metrics, input_spec, ...).

    Logged: ``train/loss`` (each term: ``train/loss_ce``, ...; ``train/aux_loss``),
    ``train/lr``; ``val/loss``, ``val/mIoU``, ``val/acc_global`` (pixel accuracy),
    ``val/acc_class`` (class-average accuracy), ``val/IoU/<class>``, ``val/acc/<class>``; the
    same under ``test/``. ``vtk test`` writes the confusion matrix
    (``confusion_matrix.csv``, and ``.png`` with matplotlib). A prediction is ``{"labels"}``,
    an ``(H, W)`` class map at the image's own size.
    """

    main_metric = ("val/mIoU", "max")
    eval_options = ("eval_mode", "window", "stride", "slide_batch", "tta_scales", "tta_flip")
    deploy_kind = "segmentation"  # the arg-max class of every pixel

    def __init__(
        self,
        model: nn.Module,
        aux_weight: float = 0.4,
        losses: Sequence[PixelLoss] | None = None,
        eval_mode: Literal["whole", "slide"] = "whole",
        window: int | tuple[int, int] = 513,
        stride: int | tuple[int, int] = 341,
        slide_batch: int = 4,
        tta_scales: Sequence[float] | None = None,
        tta_flip: bool = False,
        ignore_index: int | None = IGNORE_INDEX,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if eval_mode not in ("whole", "slide"):
            raise ConfigError(f"eval_mode must be 'whole' or 'slide', got {eval_mode!r}.")
        self.ignore_index: int = IGNORE_INDEX if ignore_index is None else ignore_index
        self.aux_weight = aux_weight
        self.losses = nn.ModuleList(losses if losses else [CrossEntropyLoss()])
        self.eval_mode, self.window, self.stride, self.slide_batch = (
            eval_mode, window, stride, slide_batch,
        )  # fmt: skip
        self.tta_scales = tuple(tta_scales) if tta_scales else (1.0,)
        self.tta_flip = tta_flip
        # one confusion matrix per split (summed across processes), from which every score is
        # read as SegNet / ChainerCV / VOC compute it (vtk.metrics.segmentation_scores)
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes, self.ignore_index)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes, self.ignore_index)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.model(images)

    # -- losses ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        auto = self._auto_weighted_losses()
        if not auto:
            return
        data = getattr(self.trainer, "datamodule", None)
        if not hasattr(data, "class_weights"):
            if stage == "fit":
                raise ConfigError(
                    "class_weights: auto needs the data's pixel counts: use a vtk "
                    "SegmentationDataModule, or give the weights as a list."
                )
            return  # a checkpoint's weights come with on_load_checkpoint
        try:
            weights = data.class_weights()
        except DataError:
            if stage == "fit":
                raise
            return  # evaluation without the training masks: the checkpoint holds the weights
        log.info("class weights (median frequency): %s", [round(w, 3) for w in weights])
        for loss in auto:
            loss.set_class_weights(weights)

    def _auto_weighted_losses(self) -> list[PixelLoss]:
        return [loss for loss in self.losses if getattr(loss, "auto", False)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The class weights that ``class_weights: auto`` resolved from the training masks go
        into the checkpoint, so ``vtk validate/test`` and ``vtk.load`` score the loss as the run
        did, without the training data."""
        super().on_save_checkpoint(checkpoint)
        resolved = {
            str(i): loss.class_weights.tolist()
            for i, loss in enumerate(self.losses)
            if getattr(loss, "auto", False) and loss.class_weights is not None
        }
        if resolved:
            checkpoint["vtk_class_weights"] = resolved

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for i, weights in (checkpoint.get("vtk_class_weights") or {}).items():
            if int(i) < len(self.losses) and getattr(self.losses[int(i)], "auto", False):
                self.losses[int(i)].set_class_weights(weights)

    def pixel_loss(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each loss term and their weighted sum (``"loss"``)."""
        terms = {f"loss_{t.name}": t(logits, target, self.ignore_index) for t in self.losses}
        total = sum(t.weight * v for t, v in zip(self.losses, terms.values()))
        return {"loss": total, **terms} if len(terms) > 1 else {"loss": total}

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        out = self.model(batch["image"])
        losses = self.pixel_loss(out["out"], batch["mask"])
        if "aux" in out:
            losses["aux_loss"] = self.pixel_loss(out["aux"], batch["mask"])["loss"]
            losses["loss"] = losses["loss"] + self.aux_weight * losses["aux_loss"]
        return losses

    # -- inference at each image's size ---------------------------------------------------------
    def _network(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]

    def infer(self, images: Tensor) -> Tensor:
        """Logits of ``(B, 3, H, W)`` images of one size, by ``eval_mode`` (no augmentation)."""
        if self.eval_mode == "whole":
            return inference.whole(self._network, images)
        return torch.cat(
            [
                inference.slide(self._network, x[None], self.window, self.stride, self.slide_batch)
                for x in images
            ]
        )

    def logits(self, images: Sequence[Tensor], augment: bool = False) -> list[Tensor]:
        """``(C, H, W)`` logits of each image at its own size; images of one size run as one
        batch; ``augment`` adds the test-time augmentation."""
        out: list[Tensor | None] = [None] * len(images)
        if augment and (self.tta_flip or self.tta_scales != (1.0,)):
            for i, x in enumerate(images):
                out[i] = inference.augmented(self.infer, x[None], self.tta_scales, self.tta_flip)[0]
            return out  # type: ignore[return-value]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(images):
            by_size.setdefault(tuple(x.shape[-2:]), []).append(i)
        for indices in by_size.values():
            for i, logits in zip(indices, self.infer(torch.stack([images[i] for i in indices]))):
                out[i] = logits
        return out  # type: ignore[return-value]

    def _evaluate(self, batch: dict[str, Any] | None, stage: str) -> None:
        if batch is None:
            return
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        losses = []
        for logits, mask in zip(
            self.logits(batch["image"], augment=stage == "test"), batch["mask"]
        ):
            logits, mask = logits[None], mask[None]
            confusion.update(logits.argmax(1), mask)
            losses.append(self.pixel_loss(logits, mask)["loss"])
        n = len(losses)
        self.log(f"{stage}/loss", torch.stack(losses).mean(), batch_size=n, sync_dist=True)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_scores(self, stage: str, confusion: MulticlassConfusionMatrix) -> np.ndarray:
        """Log the split's scores (the matrix is summed across processes); returns the matrix."""
        matrix = confusion.compute()
        confusion.reset()
        scores = segmentation_scores(matrix)
        for key in ("mIoU", "acc_global", "acc_class"):
            self.log(
                f"{stage}/{key}", scores[key].float(), prog_bar=stage == "val" and key == "mIoU"
            )
        for key in ("IoU", "acc"):
            for name, value in zip(self.class_names, scores[key].float()):
                self.log(f"{stage}/{key}/{name}", value)
        return matrix.cpu().numpy()

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.val_confusion)

    def on_test_epoch_end(self) -> None:
        matrix = self._log_scores("test", self.test_confusion)
        if self.trainer.is_global_zero:
            write_confusion_matrix(matrix, self.class_names, self.output_path("."))

    # -- prediction -----------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        """Class maps at each image's own size (with the test-time augmentation)."""
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        return [
            {"id": i, "path": p, "labels": logits.argmax(0).cpu().numpy().astype(dtype)}
            for i, p, logits in zip(
                batch["id"], batch["path"], self.logits(batch["image"], augment=True)
            )
        ]

    def prediction_writer(self, output_dir: Path) -> Callback:
        return SegmentationWriter(str(output_dir), self.num_classes, class_names=self.class_names)

    def export_spec(self, size: int) -> dict[str, Any]:
        return {**super().export_spec(size), "module": _Logits(self.model).eval()}

    def default_size(self) -> int:
        return super().default_size() if self.eval_mode == "whole" else int(np.max(self.window))

    def object_sizes(self, datamodule: Any) -> tuple[np.ndarray, str]:
        """The class regions of (up to 500) validation masks."""
        datamodule.setup("validate")
        dataset = datamodule.datasets["val"]
        n = min(len(dataset), 500)
        masks = [dataset[i]["mask"].numpy() for i in range(n)]
        sides = mask_object_sizes(masks, self.ignore_index)
        return sides, f"the class regions of {n} validation masks"


class _Logits(nn.Module):
    """A segmentation model's main output alone (what is exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]
