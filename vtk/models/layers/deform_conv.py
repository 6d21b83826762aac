"""Deformable convolution, v1 (Dai et al., ICCV 2017) and v2 (Zhu et al., "Deformable ConvNets
v2", CVPR 2019), on ``torchvision.ops.deform_conv2d``.

A regular conv predicts, per output position, 2 offsets per kernel tap (v1) plus a modulation
scalar per tap (v2, through a sigmoid). The offset conv starts at zero: v1 then equals the
plain convolution, v2 the plain convolution times 0.5 (the paper's initial modulation).
``weight`` and ``bias`` have ``nn.Conv2d``'s names and shapes, so a pretrained conv's weights
load into a deformable one unchanged; only ``offset`` is new.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class DeformConv2d(nn.Module):
    """Deformable conv with ``nn.Conv2d``'s arguments; ``modulated=True`` is v2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        modulated: bool = False,
        offset_groups: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size,
            stride,
            padding,
            dilation,
        )
        self.groups, self.modulated, self.offset_groups = groups, modulated, offset_groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        taps = offset_groups * kernel_size * kernel_size
        self.offset = nn.Conv2d(
            in_channels,
            (3 if modulated else 2) * taps,
            kernel_size,
            stride,
            padding,
            dilation,
            bias=True,
        )
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.offset(x)
        mask = None
        if self.modulated:
            taps = self.offset_groups * self.kernel_size**2
            out, mask = out[:, : 2 * taps], torch.sigmoid(out[:, 2 * taps :])
        # torchvision's kernels turn an offset into an integer position without a check: a NaN
        # or infinite offset (a diverged run) reads outside the input and crashes the process.
        # Beyond the map's extent a tap samples zeros either way, so the clamp changes nothing
        # for finite offsets; NaN becomes 0 and the run's loss shows the divergence instead.
        limit = float(x.shape[-2] + x.shape[-1] + self.kernel_size * self.dilation)
        out = torch.nan_to_num(out, nan=0.0).clamp(-limit, limit)
        # half precision (autocast) runs in fp32: the bilinear sampling of the offsets is
        # precision-sensitive, and torchvision's CPU kernel has no bf16 (on CUDA torchvision
        # casts to fp32 itself); fp32 and fp64 stay as they are
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            return deform_conv2d(
                x.to(dtype),
                out.to(dtype),
                self.weight.to(dtype),
                None if self.bias is None else self.bias.to(dtype),
                (self.stride,) * 2,
                (self.padding,) * 2,
                (self.dilation,) * 2,
                None if mask is None else mask.to(dtype),
            )

    def extra_repr(self) -> str:
        version = "v2" if self.modulated else "v1"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, {version}"
        )


def deform_conv_v1(*args: Any, **kwargs: Any) -> DeformConv2d:
    """Deformable convolution v1 (Dai et al., ICCV 2017): learned offsets."""
    return DeformConv2d(*args, modulated=False, **kwargs)


def deform_conv_v2(*args: Any, **kwargs: Any) -> DeformConv2d:
    """Deformable convolution v2 (Zhu et al., CVPR 2019): offsets and modulation masks."""
    return DeformConv2d(*args, modulated=True, **kwargs)
