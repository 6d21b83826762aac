"""Atrous Spatial Pyramid Pooling.

Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation" (DeepLabv3, 2017),
§3.3: a 1x1 conv, three 3x3 convs at increasing atrous rates and image-level pooling, each
256 channels with BN, concatenated and projected by a 1x1 conv. Module names and layout are
torchvision's (``torchvision.models.segmentation.deeplabv3.ASPP``), so its weights load.

    >>> aspp = ASPP(2048, atrous_rates=(6, 12, 18))
    >>> aspp(torch.randn(2, 2048, 33, 33)).shape
    torch.Size([2, 256, 33, 33])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> list:
    padding = 0 if kernel_size == 1 else dilation
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv, BN, ReLU, upsampled back."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """ASPP on one feature map.

    Args:
        in_channels: channels of the input map (from the backbone's ``feature_info``).
        atrous_rates: rates of the three 3x3 branches: (6, 12, 18) at output stride 16,
            doubled at output stride 8 (DeepLabv3 §3.3).
        out_channels: channels of every branch and of the output (256 in the paper).
        image_pooling: add the image-level pooling branch (DeepLabv3 §3.3, Table 4).
        dropout: dropout after the projection (0.5 in torchvision's DeepLabv3).
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        out_channels: int = 256,
        image_pooling: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 1))]
        branches += [
            nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 3, r)) for r in atrous_rates
        ]
        if image_pooling:
            branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *_conv_bn_relu(len(branches) * out_channels, out_channels, 1), nn.Dropout(dropout)
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
