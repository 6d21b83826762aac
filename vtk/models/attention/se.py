"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2019).

Global average pooling, a bottleneck of two 1x1 convs with bias (§3.2: reduction ratio 16),
a sigmoid gate that rescales the channels. In a ResNet it sits after the last BN of the residual
branch, before the addition (Fig. 3), which gives SE-ResNet-50 its 28,088,024 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """SE block on ``channels`` channels; ``reduction`` sets the bottleneck width (C / r)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))
