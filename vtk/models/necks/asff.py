"""Adaptively Spatial Feature Fusion (Liu, Huang & Wang, "Learning Spatial Fusion for
Single-Shot Object Detection", 2019) on an FPN's three finest levels.

For each target level, every other level is resized to it (§3.1): upsampling by a 1x1 conv
then interpolation, downsampling by 1/2 with a 3x3 stride-2 conv, by 1/4 with a stride-2
max-pool before that conv. Each resized map is compressed by a 1x1 conv to 16 channels; the
concatenation gives three weight maps by a 1x1 conv, softmax over the levels (§3.2, Eq. 2);
the weighted sum goes through a 3x3 conv. As the authors' code, convs are followed by BN and a
LeakyReLU(0.1).

``ASFFNeck`` is an :class:`~vtk.models.necks.FPN` whose P3-P5 are replaced by their ASFF
fusions; its FPN parameters keep torchvision's names, so an FPN detector's weights load into it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.necks.fpn import FPN


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class ASFF(nn.Module):
    """Fuse ``num_levels`` maps of ``channels`` channels (fine to coarse) at level ``level``."""

    def __init__(
        self, channels: int, level: int, num_levels: int = 3, compress_channels: int = 16
    ) -> None:
        super().__init__()
        self.level = level
        resize: list[nn.Module] = []
        for j in range(num_levels):
            if j == level:
                resize.append(nn.Identity())
            elif j > level:  # coarser: 1x1 conv, then interpolation in forward
                resize.append(_conv(channels, channels, 1))
            else:  # finer: stride-2 3x3 conv, after stride-2 max-pools for larger ratios
                pools = [nn.MaxPool2d(3, 2, 1) for _ in range(level - j - 1)]
                resize.append(nn.Sequential(*pools, _conv(channels, channels, 3, 2)))
        self.resize = nn.ModuleList(resize)
        self.weight = nn.ModuleList(
            _conv(channels, compress_channels, 1) for _ in range(num_levels)
        )
        self.weight_levels = nn.Conv2d(compress_channels * num_levels, num_levels, 1)
        self.expand = _conv(channels, channels, 3)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[self.level].shape[-2:]
        resized = []
        for x, resize in zip(features, self.resize):
            x = resize(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="nearest")
            resized.append(x)
        logits = self.weight_levels(torch.cat([w(x) for w, x in zip(self.weight, resized)], dim=1))
        alpha = torch.softmax(logits.float(), dim=1).to(resized[0].dtype)  # Eq. 2: sums to 1
        fused = sum(alpha[:, i : i + 1] * x for i, x in enumerate(resized))
        return self.expand(fused)


class ASFFNeck(FPN):
    """An FPN whose three finest levels are fused by ASFF (P6/P7, if any, come from the FPN).

    Args: as :class:`~vtk.models.necks.FPN`, plus ``compress_channels`` (16 in the paper).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        extra_levels: Literal["p6p7", "pool"] | None = "p6p7",
        p6_from: Literal["p5", "c5"] = "p5",
        compress_channels: int = 16,
    ) -> None:
        if len(in_channels) < 3:
            raise ValueError(f"ASFF fuses three levels; the backbone gives {len(in_channels)}.")
        super().__init__(in_channels, in_strides, out_channels, extra_levels, p6_from)
        self.asff = nn.ModuleList(
            ASFF(out_channels, level, 3, compress_channels) for level in range(3)
        )

    def forward(self, features: Sequence[Tensor]) -> OrderedDict[str, Tensor]:  # type: ignore[override]
        out = super().forward(features)
        keys = list(out)[:3]
        maps = [out[k] for k in keys]
        for k, asff in zip(keys, self.asff):
            out[k] = asff(maps)
        return out
