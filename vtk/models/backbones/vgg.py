"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015), with and without batch normalisation.

Five stages of 3x3 convs (stride 1, padding 1) each closed by a 2x2 max-pool; configurations
A, B, D and E of Table 1 are VGG-11/13/16/19, and configuration C is VGG-16 whose third conv
in stages 3-5 is 1x1. The conv stack is torchvision's ``features`` (same indices), so its
weights load unchanged; the outputs are the five pooled maps (strides 2 to 32). Plug-ins live
beside ``features`` (``attn.<stage>``, ``non_local``), except deformable convs, which replace
the 3x3 convs in place and keep their weights' names.

``output_stride`` 16 or 8 turns the last pools into 3x3 stride-1 pools and dilates the convs
after them, as DeepLab-v1 does with VGG-16.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.layers import MaxBlurPool2d
from vtk.models.weights import load_weights, no_weights, weights_normalisation

# Table 1 of the paper: conv widths per stage; "1x1" is a 1x1 conv of the stage's width
VGG_CONFIGS: dict[str, tuple[tuple[int | str, ...], ...]] = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "C": ((64, 64), (128, 128), (256, 256, "1x1"), (512, 512, "1x1"), (512, 512, "1x1")),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}
VGG_ARCHS: dict[str, dict[str, Any]] = {
    f"{name}{'_bn' if bn else ''}": dict(config=config, batch_norm=bn)
    for name, config in (
        ("vgg11", "A"),
        ("vgg13", "B"),
        ("vgg16_c", "C"),
        ("vgg16", "D"),
        ("vgg19", "E"),
    )
    for bn in (False, True)
}
VGGArch = Literal[tuple(VGG_ARCHS)]  # type: ignore[valid-type]


class VGG(Backbone):
    """VGG backbone returning the output of each stage's max-pool.

    Args:
        arch: ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19``, ``vgg16_c`` (configuration C), each
            also with ``_bn``.
        output_stride: 32, 16 or 8.
        weights: ``None``, ``"imagenet"`` (torchvision's, not for ``vgg16_c``), another
            torchvision weights name, or a path to a state_dict.
        **kwargs: ``out_indices``, ``frozen_stages``, ``norm_eval`` and the plug-ins, see
            :class:`~vtk.models.backbones.base.Backbone`. Attention goes at the end of each
            stage, before its pool; ``non_local`` counts a stage's convs as its blocks.
    """

    c3_stage = 2  # the stages' pools have strides 2, 4, 8, 16, 32

    def __init__(
        self,
        arch: VGGArch = "vgg16_bn",
        output_stride: Literal[8, 16, 32] = 32,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if arch not in VGG_ARCHS:
            raise ValueError(f"unknown VGG arch {arch!r}; valid: {', '.join(VGG_ARCHS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        config = VGG_CONFIGS[VGG_ARCHS[arch]["config"]]
        batch_norm = VGG_ARCHS[arch]["batch_norm"]
        super().__init__(len(config), **kwargs)
        self._check_blocks([len(stage) for stage in config], unit="conv")
        self.arch = arch

        layers: list[nn.Module] = []
        attn: list[nn.Module] = []
        non_local: dict[str, nn.Module] = {}
        self._unit_ends: dict[int, str] = {}  # index of a conv unit's ReLU -> its non-local key
        self._pools: dict[int, int] = {}  # index of a stage's pool -> the stage
        infos = []
        in_channels, stride, dilation = 3, 1, 1
        for i in range(self.num_built_stages):
            width = next(c for c in config[i] if isinstance(c, int))
            for j, spec in enumerate(config[i]):
                if spec == "1x1":
                    conv = nn.Conv2d(in_channels, width, 1)
                else:
                    conv = self.conv3x3_layer(i)(
                        in_channels, spec, 3, 1, padding=dilation, dilation=dilation, bias=True
                    )
                layers += [
                    conv,
                    *([nn.BatchNorm2d(width)] if batch_norm else []),
                    nn.ReLU(inplace=True),
                ]
                in_channels = width
                factory = self.non_local_layer(i, j)
                if factory is not None:
                    non_local[f"{i}_{j}"] = factory(width)
                    self._unit_ends[len(layers) - 1] = f"{i}_{j}"
            factory = self.attention_layer(i)
            attn.append(factory(width) if factory is not None else nn.Identity())
            if stride * 2 > output_stride:
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))  # DeepLab-v1: keep resolution
                dilation *= 2
            else:
                pool = self.blur_layer(2)
                layers.append(
                    nn.MaxPool2d(2, 2) if pool is None else MaxBlurPool2d(2, 2, 0, self.blur_pool)
                )
                stride *= 2
            self._pools[len(layers) - 1] = i
            infos.append(FeatureInfo(width, stride, f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.attn = nn.ModuleList(attn)
        self.non_local_blocks = nn.ModuleDict(non_local)

        for m in self.own_modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not no_weights(weights):
            load_weights(self, weights, torchvision_name=arch)
            self.pretrained = True
            self.weights_norm = weights_normalisation(weights, arch)
        self._set_feature_info(infos)

    def stage_modules(self) -> list[list[nn.Module]]:
        groups: list[list[nn.Module]] = [[]]  # no stem
        start = 0
        for pool, stage in sorted(self._pools.items()):
            groups.append([*list(self.features)[start : pool + 1], self.attn[stage]])
            start = pool + 1
        return groups

    def forward_features(self, x: Tensor) -> list[Tensor]:
        outs = []
        for k, layer in enumerate(self.features):
            stage = self._pools.get(k)
            if stage is not None:
                x = self.attn[stage](x)  # end of the stage, before its pool
            x = layer(x)
            if k in self._unit_ends:
                x = self.non_local_blocks[self._unit_ends[k]](x)
            if stage is not None and stage in self.out_indices:
                outs.append(x)
        return outs
