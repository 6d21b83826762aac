"""Pixel losses for segmentation, combined as a weighted sum in a recipe::

    losses:
      - class_path: vtk.losses.CrossEntropyLoss
        init_args: {class_weights: auto}        # SegNet's median frequency balancing
      - class_path: vtk.losses.DiceLoss
        init_args: {weight: 0.5}

Each takes ``(logits (B, C, H, W), target (B, H, W), ignore_index)``; pixels labelled
``ignore_index`` never contribute, and a crop with none labelled gives 0, not NaN. ``weight``
is the term's factor in the sum. Plain ``torch`` (no Lightning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PixelLoss(nn.Module):
    """Base of the terms: ``weight`` is the factor of the term in the total."""

    name = "loss"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        raise NotImplementedError


class CrossEntropyLoss(PixelLoss):
    """Cross-entropy over the labelled pixels.

    Args:
        weight: the term's factor.
        class_weights: a weight per class (the mean is then weighted, as PyTorch's), or
            ``"auto"``: SegNet's median frequency balancing (Badrinarayanan et al. 2017 §3.3)
            from the training masks' pixel counts (the data's audit).
        label_smoothing: as PyTorch's.
        ohem: online hard example mining (as used for Cityscapes; mmsegmentation's
            ``OHEMPixelSampler``): only pixels whose true class has a probability below
            ``ohem_thresh`` count, and at least the ``ohem_min_kept`` hardest.
    """

    name = "ce"

    def __init__(
        self,
        weight: float = 1.0,
        class_weights: Sequence[float] | Literal["auto"] | None = None,
        label_smoothing: float = 0.0,
        ohem: bool = False,
        ohem_thresh: float = 0.7,
        ohem_min_kept: int = 100_000,
    ) -> None:
        super().__init__(weight)
        self.auto = class_weights == "auto"
        self.class_weights: Tensor | None
        self.register_buffer(
            "class_weights",
            None if class_weights is None or self.auto else torch.tensor(class_weights, dtype=torch.float32),
            persistent=False,
        )  # fmt: skip
        self.label_smoothing = label_smoothing
        self.ohem, self.ohem_thresh, self.ohem_min_kept = ohem, ohem_thresh, ohem_min_kept

    def set_class_weights(self, weights: Sequence[float]) -> None:
        device = self.class_weights.device if self.class_weights is not None else None
        self.class_weights = torch.tensor(weights, dtype=torch.float32, device=device)

    def forward(self, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        if self.auto and self.class_weights is None:
            raise RuntimeError(
                "class_weights: auto has not been resolved: the weights come from the training "
                "masks (at fit) or from the checkpoint of the run that resolved them."
            )
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        per_pixel = F.cross_entropy(
            logits.float(), target, weight=weights, ignore_index=ignore_index,
            reduction="none", label_smoothing=self.label_smoothing,
        )  # fmt: skip
        valid = target != ignore_index
        if self.ohem:
            valid = valid & self._hard(logits, target, valid)
        # the mean over labelled pixels, weighted as PyTorch's: sum w_y l / sum w_y
        norm = (
            valid.float() if weights is None else weights[target.clamp(0, len(weights) - 1)] * valid
        )
        return (per_pixel * valid).sum() / norm.sum().clamp(min=1e-12)

    @torch.no_grad()
    def _hard(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        index = target.clamp(0, logits.shape[1] - 1).unsqueeze(1)  # ignored pixels: any class
        prob = torch.softmax(logits.float(), 1).gather(1, index)[:, 0]
        p = prob[valid]
        if p.numel() == 0:
            return valid
        kth = min(self.ohem_min_kept, p.numel()) - 1
        threshold = max(float(p.sort().values[kth]), self.ohem_thresh)
        return prob < threshold if kth + 1 < p.numel() else valid


class DiceLoss(PixelLoss):
    """1 - the mean over classes of soft Dice (Milletari et al. 2016, V-Net):
    (2 sum p t + smooth) / (sum p + sum t + smooth) on softmax probabilities, labelled pixels."""

    name = "dice"

    def __init__(self, weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__(weight)
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        valid = (target != ignore_index).unsqueeze(1).float()
        prob = torch.softmax(logits.float(), 1) * valid
        onehot = F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1])
        onehot = onehot.permute(0, 3, 1, 2).float() * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        dice = (2 * inter + self.smooth) / (prob.sum(dims) + onehot.sum(dims) + self.smooth)
        return 1 - dice.mean()


class FocalLoss(PixelLoss):
    """Focal loss (Lin et al. 2017, Eq. 5) per labelled pixel: -(1 - p_t)^gamma log p_t,
    averaged; ``alpha`` an optional weight per class."""

    name = "focal"

    def __init__(
        self, weight: float = 1.0, gamma: float = 2.0, alpha: Sequence[float] | None = None
    ) -> None:
        super().__init__(weight)
        self.gamma = gamma
        self.alpha: Tensor | None
        self.register_buffer(
            "alpha", None if alpha is None else torch.tensor(alpha, dtype=torch.float32),
            persistent=False,
        )  # fmt: skip

    def forward(self, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        valid = target != ignore_index
        t = target.clamp(0, logits.shape[1] - 1).unsqueeze(1)
        log_p = F.log_softmax(logits.float(), 1).gather(1, t)[:, 0]
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[t[:, 0]]
        return (loss * valid).sum() / valid.sum().clamp(min=1)
