"""ResNet, ResNeXt, Wide ResNet and SE-ResNet / SE-ResNeXt.

Papers: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016);
Xie et al., "Aggregated Residual Transformations for Deep Neural Networks" (CVPR 2017);
Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016); Hu et al., "Squeeze-and-Excitation
Networks" (CVPR 2018); dilation and multi-grid from Chen et al., "Rethinking Atrous Convolution
for Semantic Image Segmentation" (DeepLabv3, 2017), §3.2-3.3.

Parameter names, initialisation and the placement of the stride (on the 3x3 conv, "ResNet
v1.5") are torchvision's, so torchvision's state_dicts load unchanged and give the same outputs.
Plug-ins add modules *inside* blocks (``layer3.1.attn``, ``layer3.1.non_local``,
``layer3.1.conv2.offset``), so the names torchvision's weights use never move.

    >>> m = ResNet("resnet50", output_stride=16)
    >>> [(f.channels, f.stride) for f in m.feature_info]
    [(256, 4), (512, 8), (1024, 16), (2048, 16)]
    >>> se = ResNet("resnet50", attention="se")  # = ResNet("seresnet50")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo, ModuleFactory
from vtk.models.layers import MaxBlurPool2d
from vtk.models.weights import load_weights, no_weights, weights_normalisation

NormLayer = Callable[[int], nn.Module]
Shortcut = Literal["A", "B", "C"]


class ZeroPadShortcut(nn.Module):
    """Option A of the ResNet paper (§4.2, Table 3): subsample, pad new channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def _shortcut(
    option: Shortcut, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
) -> nn.Module | None:
    """The residual shortcut: option A (zero padding), B (projection where the shape changes,
    torchvision's) or C (projection everywhere), ResNet paper Table 3."""
    if option not in ("A", "B", "C"):
        raise ValueError(f"shortcut must be 'A', 'B' or 'C', got {option!r}")
    changes = stride != 1 or in_channels != out_channels
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride) if changes else None
    if option == "B" and not changes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm_layer(out_channels)
    )


class _ResidualBlock(nn.Module):
    """What both blocks share: shortcut, anti-aliased stride, attention and a trailing plug-in."""

    def _init_plugins(
        self,
        in_channels: int,
        stride: int,
        norm_layer: NormLayer,
        attn_layer: ModuleFactory | None,
        post_layer: ModuleFactory | None,
        blur: nn.Module | None,
        shortcut: Shortcut,
    ) -> None:
        self.blur = blur  # carries the stride when anti-aliased; the convs then have stride 1
        conv_stride = 1 if blur is not None else stride
        self.downsample = _shortcut(
            shortcut, in_channels, self.out_channels, conv_stride, norm_layer
        )
        self.attn = attn_layer(self.out_channels) if attn_layer is not None else None
        self.non_local = post_layer(self.out_channels) if post_layer is not None else None

    def _strided(self, x: Tensor) -> Tensor:
        return x if self.blur is None else self.blur(x)

    def _finish(self, out: Tensor, x: Tensor) -> Tensor:
        if self.attn is not None:  # end of the residual branch, before the addition
            out = self.attn(out)
        out += x if self.downsample is None else self.downsample(self._strided(x))
        out = self.relu(out)
        return out if self.non_local is None else self.non_local(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (ResNet-18/34, CIFAR ResNets). Dilation, if any, applies to both."""

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
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        attn_layer: ModuleFactory | None = None,
        post_layer: ModuleFactory | None = None,
        blur: nn.Module | None = None,
        shortcut: Shortcut = "B",
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64 (no ResNeXt).")
        self.out_channels = planes * self.expansion
        s = 1 if blur is not None else stride
        self.conv1 = conv_layer(
            in_channels, planes, 3, s, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv_layer(
            planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = norm_layer(planes)
        self._init_plugins(in_channels, stride, norm_layer, attn_layer, post_layer, blur, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        # anti-aliased: conv (stride 1) -> BN -> ReLU -> BlurPool, the paper's ConvBlurPool
        out = self._strided(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self._finish(out, x)


class Bottleneck(_ResidualBlock):
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
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        attn_layer: ModuleFactory | None = None,
        post_layer: ModuleFactory | None = None,
        blur: nn.Module | None = None,
        shortcut: Shortcut = "B",
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.out_channels = planes * self.expansion
        s = 1 if blur is not None else stride
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = conv_layer(
            width, width, 3, s, padding=dilation, dilation=dilation, groups=groups, bias=False
        )
        self.bn2 = norm_layer(width)
        self.conv3 = nn.Conv2d(width, self.out_channels, 1, bias=False)
        self.bn3 = norm_layer(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self._init_plugins(in_channels, stride, norm_layer, attn_layer, post_layer, blur, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        # anti-aliased: conv (stride 1) -> BN -> ReLU -> BlurPool, the paper's ConvBlurPool
        out = self._strided(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self._finish(out, x)


# The variants: data, not classes. Names are torchvision's where it has the model.
RESNET_ARCHS: dict[str, dict[str, Any]] = {
    # one basic block per stage (timm's resnet10t less its deep stem): a small network for
    # small sets and CPUs; torchvision has no weights for it
    "resnet10": dict(block=BasicBlock, layers=(1, 1, 1, 1)),
    "resnet18": dict(block=BasicBlock, layers=(2, 2, 2, 2)),
    "resnet34": dict(block=BasicBlock, layers=(3, 4, 6, 3)),
    "resnet50": dict(block=Bottleneck, layers=(3, 4, 6, 3)),
    "resnet101": dict(block=Bottleneck, layers=(3, 4, 23, 3)),
    "resnet152": dict(block=Bottleneck, layers=(3, 8, 36, 3)),
    "resnext50_32x4d": dict(block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4),
    "resnext101_32x4d": dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=32, base_width=4),
    "resnext101_32x8d": dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=32, base_width=8),
    "resnext101_64x4d": dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=64, base_width=4),
    "wide_resnet50_2": dict(block=Bottleneck, layers=(3, 4, 6, 3), base_width=128),
    "wide_resnet101_2": dict(block=Bottleneck, layers=(3, 4, 23, 3), base_width=128),
    # SENet (Hu et al. 2018, Table 2): the same networks with SE in every block, reduction 16
    "seresnet50": dict(block=Bottleneck, layers=(3, 4, 6, 3), attention="se"),
    "seresnet101": dict(block=Bottleneck, layers=(3, 4, 23, 3), attention="se"),
    "seresnext50_32x4d": dict(
        block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4, attention="se"
    ),
    "seresnext101_32x4d": dict(
        block=Bottleneck, layers=(3, 4, 23, 3), groups=32, base_width=4, attention="se"
    ),
}
ResNetArch = Literal[tuple(RESNET_ARCHS)]  # type: ignore[valid-type]


class ResNet(Backbone):
    """ResNet-family backbone returning the outputs of ``layer1..layer4``.

    Args:
        arch: the variant, e.g. ``"resnet101"``, ``"resnext50_32x4d"``, ``"seresnet50"``.
        output_stride: 32, 16 or 8. Stages that would go past it keep their resolution and
            dilate their 3x3 convs instead (torchvision's ``replace_stride_with_dilation``).
        multi_grid: DeepLabv3's unit rates for the blocks of the last stage, e.g. ``(1, 2, 4)``:
            block ``i`` of ``layer4`` gets dilation ``stage_rate * multi_grid[i]``.
        zero_init_residual: start each residual branch's last BN at zero (Goyal et al. 2017).
        norm_layer: the normalisation layer, e.g. ``torchvision.ops.FrozenBatchNorm2d``.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's ``IMAGENET1K_V1``),
            another torchvision weights name (``"IMAGENET1K_V2"``), or a path to a state_dict.
        **kwargs: ``out_indices``, ``frozen_stages``, ``norm_eval`` and the plug-ins
            (``attention``, ``non_local``, ``deform``, ``blur_pool``, ``stn``), see
            :class:`~vtk.models.backbones.base.Backbone`. Attention goes at the end of each
            residual branch, before the addition; non-local blocks after the given blocks; in
            deformable stages every 3x3 conv becomes deformable.
    """

    def __init__(
        self,
        arch: ResNetArch = "resnet50",
        output_stride: Literal[8, 16, 32] = 32,
        multi_grid: Sequence[int] | None = None,
        zero_init_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if arch not in RESNET_ARCHS:
            raise ValueError(f"unknown ResNet arch {arch!r}; valid: {', '.join(RESNET_ARCHS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        cfg = RESNET_ARCHS[arch]
        if "attention" in cfg:
            if kwargs.get("attention") not in (None, cfg["attention"]):
                raise ValueError(
                    f"{arch} has {cfg['attention']!r} attention built in; for another kind use "
                    f"the plain ResNet arch with attention={kwargs['attention']!r}."
                )
            kwargs["attention"] = cfg["attention"]
        block, layers = cfg["block"], cfg["layers"]
        super().__init__(len(layers), **kwargs)
        if multi_grid is not None and len(multi_grid) != layers[-1]:
            raise ValueError(
                f"multi_grid={list(multi_grid)} needs one rate per block of the last stage: "
                f"{arch} has {layers[-1]} blocks there."
            )
        self._check_blocks(layers)
        self.arch = arch

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        if self.blur_pool is None:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            # the authors' antialiased ResNet (antialiased-cnns, models_lpf/resnet.py): a 2x2
            # max at stride 1, then the blur-subsample (timm keeps the 3x3 window, padded)
            self.maxpool = MaxBlurPool2d(2, stride=2, padding=0, filter_size=self.blur_pool)

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
                s = stage_stride if j == 0 else 1
                blocks.append(
                    block(
                        in_channels,
                        64 * 2**i,
                        stride=s,
                        dilation=dilations[j],
                        groups=cfg.get("groups", 1),
                        base_width=cfg.get("base_width", 64),
                        norm_layer=norm_layer,
                        conv_layer=self.conv3x3_layer(i),
                        attn_layer=self.attention_layer(i),
                        post_layer=self.non_local_layer(i, j),
                        blur=self.blur_layer(s),
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
            self.pretrained = True
            self.weights_norm = weights_normalisation(weights, arch)
        self._set_feature_info(infos, stem=FeatureInfo(64, 2, "relu"))

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.own_modules():  # torchvision's initialisation; plug-ins keep their own
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

    def forward_features(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        outs = [x] if self.stem_out else []
        x = self.maxpool(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
