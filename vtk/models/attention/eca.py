"""Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

Global average pooling, then a 1D conv across channels whose kernel size adapts to the channel
count (§3.3, Eq. 12: k = |log2(C) / gamma + b / gamma| rounded to the nearest odd number,
gamma = 2, b = 1), then a sigmoid gate. No dimensionality reduction.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """ECA on ``channels`` channels; ``kernel_size`` overrides the adaptive choice."""

    def __init__(
        self, channels: int, kernel_size: int | None = None, gamma: int = 2, b: int = 1
    ) -> None:
        super().__init__()
        k = kernel_size or eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3))  # (B, C)
        w = self.conv(s.unsqueeze(1)).squeeze(1)  # a 1D conv along the channel axis
        return x * torch.sigmoid(w)[:, :, None, None]
