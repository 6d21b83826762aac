"""Anti-aliased downsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again",
ICML 2019).

Blur with a binomial filter, then subsample (§3.2): max-pooling becomes max (stride 1) -> blur
-> subsample, and a strided conv becomes a stride-1 conv followed by blur -> subsample. The
filter is a fixed buffer (no parameters, not saved), so a backbone with BlurPool keeps the
parameter names of the plain one and loads its weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BlurPool2d(nn.Module):
    """Binomial blur of size ``filter_size`` (2-7) then subsampling by ``stride``, per channel.

    Output sizes equal those of a 3x3 stride-``stride`` conv with padding 1.
    """

    def __init__(self, filter_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        if not 2 <= filter_size <= 7:
            raise ValueError(f"BlurPool filter_size must be in 2..7, got {filter_size}")
        a = torch.tensor(
            [math.comb(filter_size - 1, k) for k in range(filter_size)], dtype=torch.float32
        )
        kernel = torch.outer(a, a)
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)
        self.filter_size, self.stride = filter_size, stride
        lo, hi = (filter_size - 1) // 2, math.ceil((filter_size - 1) / 2)
        self.pads = (lo, hi, lo, hi)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        mode = "reflect" if min(x.shape[-2:]) > max(self.pads) else "replicate"
        x = F.pad(x, self.pads, mode=mode)
        return F.conv2d(
            x, self.kernel.to(x.dtype).expand(c, 1, -1, -1), stride=self.stride, groups=c
        )

    def extra_repr(self) -> str:
        return f"filter_size={self.filter_size}, stride={self.stride}"


class MaxBlurPool2d(nn.Module):
    """A max-pool's window at stride 1, then :class:`BlurPool2d` at the pool's stride."""

    def __init__(
        self, kernel_size: int, stride: int = 2, padding: int = 0, filter_size: int = 3
    ) -> None:
        super().__init__()
        self.max = nn.MaxPool2d(kernel_size, stride=1, padding=padding)
        self.blur = BlurPool2d(filter_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.blur(self.max(x))
