"""Convolutional Block Attention Module (Woo et al., ECCV 2018).

Channel attention (§3.1: a shared MLP over average- and max-pooled descriptors, summed, then a
sigmoid; reduction 16) followed by spatial attention (§3.1: channel-wise max and average maps,
concatenated, a 7x7 conv, a sigmoid). As the authors' code (Jongchan/attention-module):

* the spatial descriptor is ``[max, mean]`` in that channel order (their ``ChannelPool``), so
  the 7x7 conv's weights mean the same as theirs;
* the 7x7 conv (no bias) is followed by BN (momentum 0.01, their ``BasicConv``), whose weight
  their ResNet initialises to 0: the spatial gate starts at sigmoid(0) = 0.5 everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        mx = self.mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(desc)))


class CBAM(nn.Module):
    """Channel then spatial attention on ``channels`` channels."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))
