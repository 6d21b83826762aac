"""Non-local block, embedded Gaussian (Wang et al., "Non-local Neural Networks", CVPR 2018).

theta, phi, g are 1x1 convs to C/2 (§3.3); the affinity softmax(theta^T phi) weights g over all
positions; a 1x1 conv back to C and a BN whose scale starts at zero make the residual block
start as the identity (§4.1: "we initialize ... the BN layer ... to zero"). phi and g may be
max-pooled by 2 to cut the cost (§3.3 "subsampling").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block on ``channels`` channels, added as a residual."""

    def __init__(self, channels: int, reduction: int = 2, sub_sample: bool = True) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        phi = self.pool(self.phi(x)).flatten(2)  # (B, C', hw)
        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, hw, C')
        # the affinity in float32: its logits overflow half precision on large maps
        affinity = torch.softmax(torch.bmm(theta.float(), phi.float()), dim=-1).to(x.dtype)
        y = torch.bmm(affinity, g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.bn(self.out(y))
