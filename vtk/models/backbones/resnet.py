"""ResNet and ResNeXt.

Papers: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016);
Xie et al., "Aggregated Residual Transformations for Deep Neural Networks" (CVPR 2017);
dilation and multi-grid from Chen et al., "Rethinking Atrous Convolution for Semantic Image
Segmentation" (DeepLabv3, 2017), §3.2-3.3.

Parameter names, initialisation and the placement of the stride (on the 3x3 conv, "ResNet
v1.5") are torchvision's, so torchvision's state_dicts load unchanged and give the same outputs.

    >>> m = ResNet("resnet50", output_stride=16)
    >>> [(f.channels, f.stride) for f in m.feature_info]
    [(256, 4), (512, 8), (1024, 16), (2048, 16)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo
from vtk.models.weights import load_weights, no_weights

NormLayer = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). Dilation, if any, applies to both."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64 (no ResNeXt).")
        self.out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(
            in_channels, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = _shortcut(in_channels, self.out_channels, stride, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: one activation less to allocate
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided, dilated), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False
        )
        self.bn2 = norm_layer(width)
        self.conv3 = nn.Conv2d(width, self.out_channels, 1, bias=False)
        self.bn3 = norm_layer(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, self.out_channels, stride, norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def _shortcut(
    in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
) -> nn.Sequential | None:
    """Projection shortcut (1x1 conv + norm) where the shape changes, identity elsewhere."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm_layer(out_channels)
    )


# The variants: data, not classes. Names are torchvision's, whose weights they load.
RESNET_ARCHS: dict[str, dict] = {
    "resnet18": dict(block=BasicBlock, layers=(2, 2, 2, 2)),
    "resnet34": dict(block=BasicBlock, layers=(3, 4, 6, 3)),
    "resnet50": dict(block=Bottleneck, layers=(3, 4, 6, 3)),
    "resnet101": dict(block=Bottleneck, layers=(3, 4, 23, 3)),
    "resnet152": dict(block=Bottleneck, layers=(3, 8, 36, 3)),
    "resnext50_32x4d": dict(block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4),
    "resnext101_32x8d": dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=32, base_width=8),
    "resnext101_64x4d": dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=64, base_width=4),
    "wide_resnet50_2": dict(block=Bottleneck, layers=(3, 4, 6, 3), base_width=128),
    "wide_resnet101_2": dict(block=Bottleneck, layers=(3, 4, 23, 3), base_width=128),
}
ResNetArch = Literal[tuple(RESNET_ARCHS)]  # type: ignore[valid-type]


class ResNet(Backbone):
    """ResNet / ResNeXt backbone returning the outputs of ``layer1..layer4``.

    Args:
        arch: the variant, e.g. ``"resnet101"`` or ``"resnext50_32x4d"``.
        output_stride: 32, 16 or 8. Stages that would go past it keep their resolution and
            dilate their 3x3 convs instead (torchvision's ``replace_stride_with_dilation``).
        multi_grid: DeepLabv3's unit rates for the blocks of the last stage, e.g. ``(1, 2, 4)``:
            block ``i`` of ``layer4`` gets dilation ``stage_rate * multi_grid[i]``.
        out_indices: which stages to return (0 = ``layer1``); default all four.
        frozen_stages: -1 none, 0 the stem, k the stem and the first k stages (as mmdet).
        norm_eval: keep every BatchNorm in eval mode while training (small-batch fine-tuning).
        zero_init_residual: start each residual branch's last BN at zero (Goyal et al. 2017).
        norm_layer: the normalisation layer, e.g. ``torchvision.ops.FrozenBatchNorm2d``.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's ``IMAGENET1K_V1``),
            another torchvision weights name (``"IMAGENET1K_V2"``), or a path to a state_dict.
    """

    def __init__(
        self,
        arch: ResNetArch = "resnet50",
        output_stride: Literal[8, 16, 32] = 32,
        multi_grid: Sequence[int] | None = None,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        zero_init_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        weights: str | None = None,
    ) -> None:
        if arch not in RESNET_ARCHS:
            raise ValueError(f"unknown ResNet arch {arch!r}; valid: {', '.join(RESNET_ARCHS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        cfg = RESNET_ARCHS[arch]
        block, layers = cfg["block"], cfg["layers"]
        super().__init__(len(layers), out_indices, frozen_stages, norm_eval)
        if multi_grid is not None and len(multi_grid) != layers[-1]:
            raise ValueError(
                f"multi_grid={list(multi_grid)} needs one rate per block of the last stage: "
                f"{arch} has {layers[-1]} blocks there."
            )
        self.arch = arch

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        in_channels, stride, dilation = 64, 4, 1
        stages: list[nn.Sequential | None] = [None] * len(layers)
        infos = []
        for i in range(self.num_built_stages):
            stage_stride = 1 if i == 0 else 2
            first_dilation = dilation
            if stride * stage_stride > output_stride:
                dilation *= stage_stride  # keep the resolution, widen the receptive field
                stage_stride = 1
            stride *= stage_stride
            # torchvision: the first block keeps the previous dilation, the others take the new
            # one; DeepLabv3 multi-grid sets every block of the last stage explicitly.
            dilations = [first_dilation] + [dilation] * (layers[i] - 1)
            if multi_grid is not None and i == len(layers) - 1:
                dilations = [dilation * g for g in multi_grid]
            blocks = []
            for j in range(layers[i]):
                blocks.append(
                    block(
                        in_channels,
                        64 * 2**i,
                        stride=stage_stride if j == 0 else 1,
                        dilation=dilations[j],
                        groups=cfg.get("groups", 1),
                        base_width=cfg.get("base_width", 64),
                        norm_layer=norm_layer,
                    )
                )
                in_channels = blocks[-1].out_channels
            stages[i] = nn.Sequential(*blocks)
            infos.append(FeatureInfo(in_channels, stride, f"layer{i + 1}"))
        # torchvision's names; stages past the last requested output are not built (None)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self._init_weights(zero_init_residual)
        if not no_weights(weights):
            load_weights(self, weights, torchvision_name=arch)
        self._set_feature_info(infos)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [s for s in (self.layer1, self.layer2, self.layer3, self.layer4) if s is not None]

    def stage_modules(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], *([s] for s in self.stages)]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
