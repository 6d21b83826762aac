"""U-Net's contracting path (Ronneberger et al., "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015, §2), as a backbone: the encoder-free reference U-Net is this
with :class:`~vtk.models.heads.UNetHead`.

Five stages: two 3x3 convs (padded, with BatchNorm, as today's implementations) at full
resolution, then four times a 2x2 max-pool and two 3x3 convs doubling the width: 64, 128, 256,
512, 1024 channels at strides 1, 2, 4, 8, 16. ``base_channels`` scales every width (16 gives
a network a sixteenth of the size, common for retinal vessels).

    >>> m = UNetEncoder(base_channels=16)
    >>> [(f.channels, f.stride) for f in m.feature_info]
    [(16, 1), (32, 2), (64, 4), (128, 8), (256, 16)]
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.weights import load_weights, no_weights, weights_normalisation

#: name -> stages (each after the first halves the resolution)
UNET_ARCHS: dict[str, int] = {"unet": 5}
UNetArch = Literal[tuple(UNET_ARCHS)]  # type: ignore[valid-type]


class UNetEncoder(Backbone):
    """The classic U-Net encoder.

    Args:
        arch: ``"unet"`` (five stages, Ronneberger et al.).
        base_channels: the first stage's width (64 in the paper); each stage doubles it.
        weights: a path to a state_dict, or None.
        **kwargs: ``out_indices``, ``frozen_stages``, ``norm_eval``, ``attention`` (after each
            stage's convs), ``deform`` (its 3x3 convs), ``stn``; see
            :class:`~vtk.models.backbones.base.Backbone`.
    """

    c3_stage = 3  # strides 1, 2, 4, 8, 16

    def __init__(
        self,
        arch: UNetArch = "unet",
        base_channels: int = 64,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if arch not in UNET_ARCHS:
            raise ValueError(f"unknown U-Net arch {arch!r}; valid: {', '.join(UNET_ARCHS)}")
        for unsupported in ("non_local", "blur_pool"):
            if kwargs.get(unsupported):
                raise ValueError(f"UNetEncoder has no {unsupported} plug-in.")
        super().__init__(UNET_ARCHS[arch], **kwargs)
        self.arch = arch
        stages, infos, in_channels = [], [], 3
        for i in range(self.num_built_stages):
            width = base_channels * 2**i
            conv = self.conv3x3_layer(i)
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i else []
            layers += [
                conv(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                conv(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            attention = self.attention_layer(i)
            if attention is not None:
                layers.append(attention(width))
            stages.append(nn.Sequential(*layers))
            infos.append(FeatureInfo(width, 2**i, f"stages.{i}"))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        for m in self.own_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if not no_weights(weights):
            load_weights(self, weights)
            self.pretrained = True
            self.weights_norm = weights_normalisation(weights)
        self._set_feature_info(infos)

    def stage_modules(self) -> list[list[nn.Module]]:
        return [[], *([s] for s in self.stages)]  # no stem

    def forward_features(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
