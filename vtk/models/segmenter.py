"""The segmentation model: backbone -> decode head (+ auxiliary head) -> logits at input size.

    >>> from functools import partial
    >>> model = Segmenter(ResNet("resnet50", output_stride=8),
    ...                   head=partial(DeepLabV3Head, atrous_rates=(12, 24, 36)),
    ...                   num_classes=21, aux_head=FCNHead)
    >>> model.eval()(torch.randn(1, 3, 65, 65))["out"].shape
    torch.Size([1, 21, 65, 65])

Configured this way the model is torchvision's ``deeplabv3_resnet50`` parameter for parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, release_if_untrained
from vtk.models.weights import load_weights, no_weights

#: A head class (or partial) called as ``head(in_channels, num_classes)``.
HeadFactory = Callable[[Sequence[int], int], nn.Module]


class Segmenter(nn.Module):
    """Semantic segmentation model.

    Args:
        backbone: any vtk backbone; the heads read its ``feature_info``.
        head: the decode head, e.g. :class:`~vtk.models.heads.DeepLabV3Head`; called with
            the backbone's channels and ``num_classes``.
        num_classes: classes to predict, background included (given by the data in a recipe).
        aux_head: an auxiliary head trained with a weighted loss and skipped at inference,
            e.g. :class:`~vtk.models.heads.FCNHead` on stage 3.
        weights: a whole-model state_dict: the name of weights vtk ships (``vtk list weights``),
            or a path (vtk's, or torchvision's DeepLabV3 / FCN).
            When ``num_classes`` differs, the class-logits layers are re-initialised and the
            log says so; everything else must match.

    ``forward(x)`` returns ``{"out": logits}`` at the input's size, plus ``"aux"`` in training
    mode when there is an auxiliary head (torchvision's convention).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: HeadFactory,
        num_classes: int,
        aux_head: HeadFactory | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = backbone
        channels = backbone.out_channels
        # torchvision's attribute names, so its DeepLabV3 / FCN state_dicts load unchanged
        self.classifier = _build_head(head, backbone, num_classes)
        self.aux_classifier = aux_head(channels, num_classes) if aux_head is not None else None
        if not no_weights(weights):
            load_weights(self, weights, reinit_prefixes=self._logits_layers())
        release_if_untrained(self, backbone, loaded=not no_weights(weights))

    def _logits_layers(self) -> list[str]:
        names = []
        for attr in ("classifier", "aux_classifier"):
            layer = getattr(getattr(self, attr), "logits_layer", None)
            if layer is not None:
                names.append(f"{attr}.{layer}.")
        return names

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        out = {"out": _resize(self.classifier(features), size)}
        if self.aux_classifier is not None and self.training:
            out["aux"] = _resize(self.aux_classifier(features), size)
        return out


def _build_head(head: HeadFactory, backbone: Backbone, num_classes: int) -> nn.Module:
    """``head(channels, num_classes)``, with the backbone's strides for a head that takes
    ``in_strides`` (U-Net: how many blocks reach full resolution)."""
    if "in_strides" in inspect.signature(head).parameters:
        return head(backbone.out_channels, num_classes, in_strides=backbone.strides)
    return head(backbone.out_channels, num_classes)


def _resize(logits: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
