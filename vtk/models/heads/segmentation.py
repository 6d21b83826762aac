"""Semantic segmentation heads: features in, class logits out (at the features' resolution).

Every head takes ``(in_channels, num_classes)`` first: ``in_channels`` lists the channels of
all the backbone's outputs (from ``feature_info``), and the head picks its input(s) by index.
The :class:`~vtk.models.segmenter.Segmenter` passes both, so a recipe never types a channel
count::

    head:
      class_path: vtk.models.heads.DeepLabV3Head
      init_args: {atrous_rates: [6, 12, 18]}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.necks.aspp import ASPP


class _SingleInputHead(nn.Sequential):
    """A head that is a layer sequence over one backbone output; its last layer gives the logits."""

    in_index: int

    @property
    def logits_layer(self) -> str:
        """Name of the class-logits layer, re-initialised when ``num_classes`` changes."""
        return str(len(self) - 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        return super().forward(features[self.in_index])


class DeepLabV3Head(_SingleInputHead):
    """DeepLabv3: ASPP, a 3x3 conv + BN + ReLU, a 1x1 classifier (DeepLabv3 §3.3).

    The layout is torchvision's ``DeepLabHead`` (same module names), so torchvision's
    DeepLabV3 weights load unchanged.

    Args:
        in_channels: channels of every backbone output.
        num_classes: classes to predict, background included.
        atrous_rates: ASPP rates; (6, 12, 18) at output stride 16, (12, 24, 36) at 8.
        channels: width of ASPP and of the 3x3 conv (256).
        image_pooling: ASPP's image-level branch.
        dropout: ASPP's dropout after projection.
        in_index: which backbone output to use (default the last, coarsest).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        channels: int = 256,
        image_pooling: bool = True,
        dropout: float = 0.5,
        in_index: int = -1,
    ) -> None:
        aspp = ASPP(in_channels[in_index], atrous_rates, channels, image_pooling, dropout)
        super().__init__(
            aspp,
            nn.Conv2d(aspp.out_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )
        self.in_index = in_index


class FCNHead(_SingleInputHead):
    """FCN head: 3x3 conv to ``in/4`` channels + BN + ReLU + dropout, 1x1 classifier.

    Used as DeepLab's auxiliary head on stage 3 (``in_index=-2``), as torchvision's
    ``FCNHead`` (same module names).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        in_index: int = -2,
    ) -> None:
        c_in = in_channels[in_index]
        channels = channels or c_in // 4
        super().__init__(
            nn.Conv2d(c_in, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )
        self.in_index = in_index


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ decoder (Chen et al., ECCV 2018, §3.1 and Fig. 2).

    ASPP on the last map; the stride-4 low-level map reduced by a 1x1 conv to 48 channels
    (§4.1: 48 works best); the ASPP output upsampled to the low-level resolution and
    concatenated; two 3x3 convs of 256 channels (§4.1, Table 2); a 1x1 classifier. The logits
    are at the low-level map's resolution (stride 4).

    Args:
        in_channels: channels of every backbone output.
        num_classes: classes to predict.
        atrous_rates: ASPP rates (6, 12, 18) for an output stride of 16.
        channels: width of ASPP and of the decoder convs (256).
        low_level_channels: width of the reduced low-level features (48).
        image_pooling: ASPP's image-level branch.
        dropout: ASPP's dropout after projection: 0.1, the authors' (``keep_prob=0.9`` after
            the ASPP concatenation in ``deeplab/model.py`` of tensorflow/models).
        in_index: the backbone output for ASPP (default the last).
        low_level_index: the stride-4 backbone output (default the first).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        channels: int = 256,
        low_level_channels: int = 48,
        image_pooling: bool = True,
        dropout: float = 0.1,
        in_index: int = -1,
        low_level_index: int = 0,
    ) -> None:
        super().__init__()
        self.in_index, self.low_level_index = in_index, low_level_index
        self.aspp = ASPP(in_channels[in_index], atrous_rates, channels, image_pooling, dropout)
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels[low_level_index], low_level_channels, 1, bias=False),
            nn.BatchNorm2d(low_level_channels),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(
                self.aspp.out_channels + low_level_channels, channels, 3, padding=1, bias=False
            ),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    @property
    def logits_layer(self) -> str:
        return "classifier"

    def forward(self, features: list[Tensor]) -> Tensor:
        low = self.reduce(features[self.low_level_index])
        x = self.aspp(features[self.in_index])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([x, low], dim=1)))
