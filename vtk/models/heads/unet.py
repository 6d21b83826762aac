"""U-Net's decoder (Ronneberger et al., MICCAI 2015) on any backbone.

From the deepest map up, one decoder block per backbone level: upsample x2, concatenate the
level's map (the skip connection), two 3x3 conv + BN + ReLU. Where the finest level is coarser
than the image (a ResNet's stem is at stride 2, its first stage at 4), blocks without a skip
continue to full resolution, halving the channels, as segmentation_models_pytorch's U-Net does;
a 1x1 conv gives the logits at stride 1.

Every width is derived: a block has as many channels as the level it joins (the classic U-Net's
mirror), unless ``decoder_channels`` says otherwise. With :class:`~vtk.models.backbones.UNetEncoder`
(64-128-256-512-1024) and ``upsample="transpose"`` this is Ronneberger's network (padded convs,
BatchNorm) parameter for parameter::

    >>> model = Segmenter(UNetEncoder(), head=partial(UNetHead, upsample="transpose"), num_classes=2)
    >>> model(torch.randn(1, 3, 64, 64))["out"].shape
    torch.Size([1, 2, 64, 64])

On a ResNet, give the backbone ``stem_out: true`` so the stride-2 stem is a skip too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU: U-Net's unit (padded, so the size is kept)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Upsample ``x`` to the skip's size, concatenate the skip (if any), :func:`double_conv`.

    ``upsample="transpose"``: a learned 2x2 transposed conv to ``out_channels`` (the paper's
    "up-convolution"); ``"bilinear"`` / ``"nearest"``: interpolation, no parameters."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, upsample: str
    ) -> None:
        super().__init__()
        self.upsample = upsample
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            in_channels = out_channels
        self.conv = double_conv(in_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        if self.upsample == "transpose":
            x = self.up(x)
            if x.shape[-2:] != size:  # an odd size: the skip's is one more
                x = F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))
        elif x.shape[-2:] != size:
            x = F.interpolate(
                x, size=size, mode=self.upsample,
                align_corners=False if self.upsample == "bilinear" else None,
            )  # fmt: skip
        return self.conv(x if skip is None else torch.cat([x, skip], dim=1))


class UNetHead(nn.Module):
    """U-Net decoder over a backbone's maps (finest first, as backbones give them).

    Args:
        in_channels: channels of every backbone output (from ``feature_info``).
        num_classes: classes to predict.
        in_strides: the outputs' strides (the Segmenter passes them): how many blocks without
            a skip take the finest level to full resolution. Default: the finest is stride 1.
        decoder_channels: the width of each level's block, finest first (default each level's
            own channels); the blocks past the finest level halve the last.
        upsample: ``transpose`` (learned, the paper's) or ``bilinear`` / ``nearest``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        in_strides: Sequence[int] | None = None,
        decoder_channels: Sequence[int] | None = None,
        upsample: Literal["transpose", "bilinear", "nearest"] = "bilinear",
    ) -> None:
        super().__init__()
        channels = list(in_channels)
        if len(channels) < 2:
            raise ValueError(
                "UNetHead needs at least two backbone outputs (a skip and a deeper map)."
            )
        widths = list(decoder_channels) if decoder_channels is not None else channels[:-1]
        if len(widths) != len(channels) - 1:
            raise ValueError(
                f"decoder_channels gives {len(widths)} widths; one per level but the deepest "
                f"is needed: {len(channels) - 1}."
            )
        if upsample not in ("transpose", "bilinear", "nearest"):
            raise ValueError(f"upsample must be transpose, bilinear or nearest, got {upsample!r}")
        strides = (
            list(in_strides) if in_strides is not None else [2**i for i in range(len(channels))]
        )
        finest = strides[0]
        if finest < 1 or 2 ** round(math.log2(finest)) != finest:
            raise ValueError(f"UNetHead: the finest output's stride {finest} is not a power of 2.")
        blocks, x = [], channels[-1]
        for level in reversed(range(len(channels) - 1)):  # deepest skip first
            blocks.append(UpBlock(x, channels[level], widths[level], upsample))
            x = widths[level]
        self.blocks = nn.ModuleList(blocks)
        final = []
        for _ in range(round(math.log2(finest))):  # to stride 1 without skips
            final.append(UpBlock(x, 0, max(x // 2, 1), upsample))
            x = max(x // 2, 1)
        self.final_blocks = nn.ModuleList(final)
        self.classifier = nn.Conv2d(x, num_classes, 1)

    @property
    def logits_layer(self) -> str:
        return "classifier"

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = block(x, skip)
        for block in self.final_blocks:
            x = block(x, None)
        return self.classifier(x)
