"""Feature Pyramid Network (Lin et al., CVPR 2017) with RetinaNet's P6/P7 (Lin et al., ICCV 2017).

torchvision's ``FeaturePyramidNetwork`` and ``LastLevelP6P7``, given their channels by the
backbone's ``feature_info`` and checked for strides that double from level to level (as
detectron2's FPN checks). Module names are torchvision's, so its FCOS / RetinaNet checkpoints
load unchanged.

    >>> backbone = ResNet("resnet50", out_indices=(1, 2, 3))     # C3-C5
    >>> fpn = FPN(backbone.out_channels, backbone.strides)      # P3-P7
    >>> fpn.strides, fpn.out_channels
    ([8, 16, 32, 64, 128], 256)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7


def check_strides(strides: Sequence[int], who: str) -> None:
    """Refuse input levels whose strides do not double from one to the next."""
    if any(b != 2 * a for a, b in pairwise(strides)):
        raise ValueError(
            f"{who} needs backbone levels whose strides double from one to the next, got "
            f"{list(strides)}; use output_stride 32 and consecutive out_indices (e.g. [1, 2, 3] "
            "for C3-C5)."
        )


class FPN(FeaturePyramidNetwork):
    """FPN over the backbone's outputs, optionally with extra coarser levels.

    Args:
        in_channels: channels of the backbone outputs (fine to coarse).
        in_strides: their strides (must double level to level).
        out_channels: channels of every output level (256).
        extra_levels: ``"p6p7"`` adds P6 and P7 with stride-2 3x3 convs (RetinaNet / FCOS),
            ``"pool"`` adds one max-pooled level (Faster R-CNN), None adds nothing.
        p6_from: ``"p5"`` computes P6 from the FPN's P5 (torchvision's FCOS and RetinaNet v1),
            ``"c5"`` from the backbone's C5 (the RetinaNet paper).

    ``forward(features)`` returns an ordered dict of the levels ("0", "1", ..., "p6", "p7").
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int = 256,
        extra_levels: Literal["p6p7", "pool"] | None = "p6p7",
        p6_from: Literal["p5", "c5"] = "p5",
    ) -> None:
        check_strides(in_strides, type(self).__name__)
        if extra_levels == "p6p7":
            extra = LastLevelP6P7(
                out_channels if p6_from == "p5" else in_channels[-1], out_channels
            )
            added = 2
        elif extra_levels == "pool":
            extra, added = LastLevelMaxPool(), 1
        elif extra_levels is None:
            extra, added = None, 0
        else:
            raise ValueError(f"extra_levels must be 'p6p7', 'pool' or None, got {extra_levels!r}")
        super().__init__(list(in_channels), out_channels, extra_blocks=extra)
        self.out_channels = out_channels
        self.strides = [*in_strides, *(in_strides[-1] * 2 ** (i + 1) for i in range(added))]

    def forward(self, features: Sequence[Tensor]) -> OrderedDict[str, Tensor]:  # type: ignore[override]
        return super().forward(OrderedDict((str(i), f) for i, f in enumerate(features)))
