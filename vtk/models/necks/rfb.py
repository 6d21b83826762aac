"""Receptive Field Blocks (Liu, Huang & Wang, "Receptive Field Block Net for Accurate and Fast
Object Detection", ECCV 2018).

An RFB block (§3.2, Fig. 4a) runs branches of a 1x1 conv, a k x k conv and a dilated 3x3 conv
whose rate grows with k, concatenates them, merges them with a 1x1 conv and adds a 1x1
shortcut. The rates are the paper's figure, (1, 3, 5), by default; the authors' released code
(``BasicRFB``) derives them from a ``visual`` setting v as (v, v + 1, 2v + 1): (2, 3, 5) on
RFBNet300's fc7 and extra layers (v = 2), (1, 2, 3) on RFBNet512's 256-channel extra layer
(v = 1). ``rates`` sets them. RFB-s (Fig. 4b) has four narrower branches with 3x1 / 1x3 convs in place of the
larger kernels, and is used on the highest-resolution level (§3.3). Conv-BN-ReLU units as the
authors' code (BN momentum 0.01).

``RFBNeck`` puts RFB-s on the finest backbone level and RFB on the others, each mapping to
``out_channels``, and builds P6/P7 with stride-2 RFB blocks (as RFBNet's extra layers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vtk.models.necks.fpn import check_strides


def basic_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    dilation: int = 1,
    relu: bool = True,
    padding: int | tuple[int, int] | None = None,
) -> nn.Sequential:
    """Conv (no bias) -> BN (momentum 0.01) -> ReLU: the authors' ``BasicConv``. ``padding``
    defaults to "same" for odd kernels."""
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if padding is None:
        padding = (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, k, stride, padding, dilation, bias=False),
        nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.01),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class RFB(nn.Module):
    """RFB block: three ``in_channels/8``-wide branches ending in dilated 3x3 convs at ``rates``
    (the paper's Fig. 4a: 1, 3, 5)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        scale: float = 1.0,
        rates: tuple[int, int, int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        c = max(in_channels // 8, 1)
        r0, r1, r2 = rates
        self.scale = scale
        self.branch0 = nn.Sequential(
            basic_conv(in_channels, 2 * c, 1, stride),
            basic_conv(2 * c, 2 * c, 3, dilation=r0, relu=False),
        )
        self.branch1 = nn.Sequential(
            basic_conv(in_channels, c, 1),
            basic_conv(c, 2 * c, 3, stride),
            basic_conv(2 * c, 2 * c, 3, dilation=r1, relu=False),
        )
        self.branch2 = nn.Sequential(
            basic_conv(in_channels, c, 1),
            basic_conv(c, c // 2 * 3, 3),
            basic_conv(c // 2 * 3, 2 * c, 3, stride),
            basic_conv(2 * c, 2 * c, 3, dilation=r2, relu=False),
        )
        self.merge = basic_conv(6 * c, out_channels, 1, relu=False)
        self.shortcut = basic_conv(in_channels, out_channels, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.merge(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1))
        return self.relu(out * self.scale + self.shortcut(x))


class RFBs(nn.Module):
    """RFB-s block: four ``in_channels/4``-wide branches with 3x1 / 1x3 convs (rates 1, 3, 3, 5)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float = 1.0) -> None:
        super().__init__()
        c = max(in_channels // 4, 4)
        self.scale = scale
        self.branch0 = nn.Sequential(basic_conv(in_channels, c, 1), basic_conv(c, c, 3, relu=False))
        self.branch1 = nn.Sequential(
            basic_conv(in_channels, c, 1),
            basic_conv(c, c, (3, 1)),
            basic_conv(c, c, 3, dilation=3, relu=False),
        )
        self.branch2 = nn.Sequential(
            basic_conv(in_channels, c, 1),
            basic_conv(c, c, (1, 3)),
            basic_conv(c, c, 3, dilation=3, relu=False),
        )
        self.branch3 = nn.Sequential(
            basic_conv(in_channels, c // 2, 1),
            basic_conv(c // 2, c // 4 * 3, (1, 3)),
            basic_conv(c // 4 * 3, c, (3, 1)),
            basic_conv(c, c, 3, dilation=5, relu=False),
        )
        self.merge = basic_conv(4 * c, out_channels, 1, relu=False)
        self.shortcut = basic_conv(in_channels, out_channels, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        return self.relu(self.merge(torch.cat(branches, dim=1)) * self.scale + self.shortcut(x))


class RFBNeck(nn.Module):
    """RFB-s on the finest level, RFB on the others, stride-2 RFB blocks for extra levels.

    Args:
        in_channels: channels of the backbone outputs (fine to coarse).
        in_strides: their strides (must double level to level).
        out_channels: channels of every output level.
        extra_levels: how many stride-2 levels to add after the last one (2: P6, P7).
        rates: the RFB blocks' dilation rates (the paper's 1, 3, 5; see the module docs).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        extra_levels: int = 2,
        rates: tuple[int, int, int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        check_strides(in_strides, type(self).__name__)
        self.levels = nn.ModuleList(
            RFBs(c, out_channels) if i == 0 else RFB(c, out_channels, rates=rates)
            for i, c in enumerate(in_channels)
        )
        self.extra = nn.ModuleList(
            RFB(out_channels, out_channels, stride=2, rates=rates) for _ in range(extra_levels)
        )
        self.out_channels = out_channels
        self.strides = [*in_strides, *(in_strides[-1] * 2 ** (i + 1) for i in range(extra_levels))]

    def forward(self, features: Sequence[Tensor]) -> OrderedDict[str, Tensor]:
        out = OrderedDict(
            (str(i), level(f)) for i, (level, f) in enumerate(zip(self.levels, features))
        )
        x = out[str(len(features) - 1)]
        for i, extra in enumerate(self.extra):
            x = extra(x)
            out[f"p{len(features) + 3 + i}"] = x
        return out
