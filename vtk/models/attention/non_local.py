"""Non-local block, embedded Gaussian (Wang et al., "Non-local Neural Networks", CVPR 2018).

    z = x + BN(W_z y),  y_i = sum_j softmax_j(theta(x_i)^T phi(x_j) / sqrt(C')) g(x_j)

theta, phi and g are 1x1 convs to C' = C/2 (§3.3); a 1x1 conv back to C and a BN whose scale
starts at zero make the residual block start as the identity (§4.1: "we initialize the BN
layer ... to zero"). As the authors' code (video-nonlocal-net, ``nonlocal_helper.py``):

* the affinity is scaled by 1/sqrt(C') (their ``USE_SCALE``, also mmcv's default
  ``use_scale=True``); without it the starting softmax is far sharper on wide maps (C' = 512
  in ResNet-50's stage 3). ``scale=False`` turns it off;
* theta, phi, g and the output conv start from N(0, 0.01), biases from 0;
* subsampling (§3.3) max-pools the *input* by 2 before phi and g, so those two 1x1 convs run on
  a quarter of the positions: 4x fewer multiply-adds than projecting first and pooling after
  (mmcv's order; the two differ, as max does not commute with a conv). The pooling rounds up
  (``ceil_mode``) where the authors' rounds down, so an odd-sized map keeps its last row and
  column and a 1x1 map still works; on even sizes they are the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block on ``channels`` channels, added as a residual.

    Args:
        channels: input (= output) channels.
        reduction: C' = channels / reduction (2 in the paper).
        sub_sample: max-pool the input by 2 before phi and g (the paper's subsampling).
        scale: divide the affinity by sqrt(C') (the authors' and mmcv's default).
    """

    def __init__(
        self, channels: int, reduction: int = 2, sub_sample: bool = True, scale: bool = True
    ) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.inner = inner
        self.scale = scale
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        pooled = self.pool(x)
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.phi(pooled).flatten(2)  # (B, C', hw)
        g = self.g(pooled).flatten(2).transpose(1, 2)  # (B, hw, C')
        # the affinity in float32: its logits overflow half precision on large maps
        logits = torch.bmm(theta.float(), phi.float())
        if self.scale:
            logits = logits / math.sqrt(self.inner)
        affinity = torch.softmax(logits, dim=-1).to(x.dtype)
        y = torch.bmm(affinity, g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.bn(self.out(y))
