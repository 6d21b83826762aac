"""ResNets for 32x32 images (He et al., "Deep Residual Learning for Image Recognition", §4.2).

A 3x3 conv with 16 filters, then three stages of n basic blocks with 16, 32 and 64 filters on
32x32, 16x16 and 8x8 maps: 6n + 2 layers (ResNet-20/32/44/56/110/1202 for n = 3/5/7/9/18/200).
The shortcut options are the paper's Table 3: A zero-pads the new channels (no parameters;
the paper's CIFAR choice), B projects where the shape changes, C projects everywhere. With
option A, ResNet-56 has 0.85M parameters and ResNet-110 1.7M (paper Table 6).

    >>> m = CifarResNet("resnet56")
    >>> [(f.channels, f.stride) for f in m.feature_info]
    [(16, 1), (32, 2), (64, 4)]
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.backbones.resnet import BasicBlock, NormLayer, Shortcut
from vtk.models.weights import load_weights, no_weights, weights_normalisation

#: name -> blocks per stage (n); depth = 6n + 2
CIFAR_RESNET_ARCHS: dict[str, int] = {f"resnet{6 * n + 2}": n for n in (3, 5, 7, 9, 18, 200)}
CifarResNetArch = Literal[tuple(CIFAR_RESNET_ARCHS)]  # type: ignore[valid-type]


class CifarResNet(Backbone):
    """CIFAR ResNet backbone returning the outputs of its three stages.

    Args:
        arch: ``"resnet20"``, ``"resnet32"``, ``"resnet44"``, ``"resnet56"``, ``"resnet110"`` or
            ``"resnet1202"``.
        shortcut: "A", "B" or "C" (ResNet paper Table 3); "A" is the paper's CIFAR setting.
        norm_layer: the normalisation layer.
        weights: a path to a state_dict, or None.
        **kwargs: ``out_indices``, ``frozen_stages``, ``norm_eval`` and the plug-ins, see
            :class:`~vtk.models.backbones.base.Backbone`.
    """

    def __init__(
        self,
        arch: CifarResNetArch = "resnet56",
        shortcut: Shortcut = "A",
        norm_layer: NormLayer = nn.BatchNorm2d,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if arch not in CIFAR_RESNET_ARCHS:
            raise ValueError(
                f"unknown CIFAR ResNet arch {arch!r}; valid: {', '.join(CIFAR_RESNET_ARCHS)}"
            )
        n = CIFAR_RESNET_ARCHS[arch]
        super().__init__(3, **kwargs)
        self._check_blocks([n, n, n])
        self.arch = arch
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = norm_layer(16)
        self.relu = nn.ReLU(inplace=True)
        in_channels, stride = 16, 1
        stages: list[nn.Sequential | None] = [None, None, None]
        infos = []
        for i in range(self.num_built_stages):
            stage_stride = 1 if i == 0 else 2
            stride *= stage_stride
            blocks = []
            for j in range(n):
                s = stage_stride if j == 0 else 1
                blocks.append(
                    BasicBlock(
                        in_channels,
                        16 * 2**i,
                        stride=s,
                        norm_layer=norm_layer,
                        conv_layer=self.conv3x3_layer(i),
                        attn_layer=self.attention_layer(i),
                        post_layer=self.non_local_layer(i, j),
                        blur=self.blur_layer(s),
                        shortcut=shortcut,
                    )
                )
                in_channels = blocks[-1].out_channels
            stages[i] = nn.Sequential(*blocks)
            infos.append(FeatureInfo(in_channels, stride, f"layer{i + 1}"))
        self.layer1, self.layer2, self.layer3 = stages
        for m in self.own_modules():  # He et al. 2015 initialisation, as the paper
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not no_weights(weights):
            load_weights(self, weights)
            self.pretrained = True
            self.weights_norm = weights_normalisation(weights)
        self._set_feature_info(infos)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [s for s in (self.layer1, self.layer2, self.layer3) if s is not None]

    def stage_modules(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], *([s] for s in self.stages)]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
