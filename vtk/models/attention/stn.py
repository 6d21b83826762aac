"""Spatial Transformer before the stem (Jaderberg et al., "Spatial Transformer Networks", NIPS 2015).

A localisation network regresses an affine transform from a downscaled copy of the input; an
affine grid samples the input bilinearly (§3.1-3.3). The regression layer starts at zero weight
and the identity transform as bias, so the module starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SpatialTransformer(nn.Module):
    """Affine STN on ``channels``-channel images; the output has the input's size."""

    def __init__(self, channels: int = 3, hidden: int = 32, loc_size: int = 64) -> None:
        super().__init__()
        self.loc_size = loc_size
        self.localization = nn.Sequential(
            nn.Conv2d(channels, 8, 7, padding=3),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, 5, padding=2),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(10 * 16, hidden),
            nn.ReLU(inplace=True),
        )
        self.theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: Tensor) -> Tensor:
        small = F.interpolate(
            x, size=(self.loc_size, self.loc_size), mode="bilinear", align_corners=False
        )
        theta = self.theta(self.localization(small)).view(-1, 2, 3)
        grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
        )
