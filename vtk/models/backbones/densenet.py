"""DenseNet-BC (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

Dense blocks of layers that each see the concatenation of all earlier maps: BN-ReLU-1x1 conv
(bottleneck to 4k channels) then BN-ReLU-3x3 conv (k = growth rate channels), §3 "Bottleneck
layers"; transitions between blocks halve the channels (compression 0.5) with a 1x1 conv and
2x2 average pooling (§3 "Compression"). Module names are torchvision's (``features.denseblock2
.denselayer3.conv2``), so its weights load unchanged.

The outputs are the four dense blocks' outputs (strides 4, 8, 16, 32); the last one passes
through the final BN and ReLU, as torchvision's classifier sees it. ``memory_efficient``
recomputes the bottleneck layers in the backward pass (gradient checkpointing) instead of
keeping their concatenated inputs, as torchvision's option of the same name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from vtk.models.backbones.base import Backbone, FeatureInfo, ModuleFactory
from vtk.models.layers import MaxBlurPool2d
from vtk.models.weights import load_weights, no_weights, weights_normalisation


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to ``bn_size * growth_rate``) then BN-ReLU-3x3 conv (``growth_rate``)."""

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bn_size: int,
        dilation: int = 1,
        memory_efficient: bool = False,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv_layer(
            bn_size * growth_rate,
            growth_rate,
            3,
            1,
            padding=dilation,
            dilation=dilation,
            bias=False,
        )
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: Tensor) -> Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[Tensor]) -> Tensor:
        if self.memory_efficient and self.training and any(f.requires_grad for f in features):
            x = cp.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            x = self.bottleneck(*features)
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; a non-local block may follow any of them (``non_local.<j>``)."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int,
        dilation: int = 1,
        memory_efficient: bool = False,
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
        non_local: Callable[[int], ModuleFactory | None] = lambda j: None,
    ) -> None:
        super().__init__()
        blocks = {}
        for j in range(num_layers):
            channels = in_channels + j * growth_rate
            layer = DenseLayer(
                channels, growth_rate, bn_size, dilation, memory_efficient, conv_layer
            )
            self.add_module(f"denselayer{j + 1}", layer)  # torchvision's names
            factory = non_local(j)
            if factory is not None:
                blocks[str(j)] = factory(channels + growth_rate)
        self.non_local = nn.ModuleDict(blocks)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for name, layer in self.named_children():
            if not name.startswith("denselayer"):
                continue
            features.append(layer(features))
            j = str(int(name[len("denselayer") :]) - 1)
            if j in self.non_local:  # the non-local block sees everything so far
                features = [self.non_local[j](torch.cat(features, 1))]
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression) then 2x2 average pooling (or its replacement)."""

    def __init__(self, in_channels: int, out_channels: int, pool: nn.Module) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_channels),
                relu=nn.ReLU(inplace=True),
                conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                pool=pool,
            )
        )


DENSENET_ARCHS: dict[str, dict[str, Any]] = {  # Table 1 of the paper; 161 is k = 48
    "densenet121": dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet161": dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96),
    "densenet169": dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    "densenet201": dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
}
DenseNetArch = Literal[tuple(DENSENET_ARCHS)]  # type: ignore[valid-type]


class DenseNet(Backbone):
    """DenseNet-BC backbone returning the output of each dense block.

    Args:
        arch: ``densenet121``, ``densenet161``, ``densenet169`` or ``densenet201``.
        output_stride: 32, 16 or 8; later transitions then do not pool and the dense layers
            after them dilate their 3x3 convs.
        memory_efficient: gradient checkpointing of the bottleneck layers.
        weights: ``None``, ``"imagenet"`` (torchvision's), another torchvision weights name, or a
            path to a state_dict.
        **kwargs: ``out_indices``, ``frozen_stages``, ``norm_eval`` and the plug-ins, see
            :class:`~vtk.models.backbones.base.Backbone`. Attention acts on each dense block's
            output; ``non_local`` counts a block's dense layers as its blocks.
    """

    def __init__(
        self,
        arch: DenseNetArch = "densenet121",
        output_stride: Literal[8, 16, 32] = 32,
        memory_efficient: bool = False,
        bn_size: int = 4,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if arch not in DENSENET_ARCHS:
            raise ValueError(f"unknown DenseNet arch {arch!r}; valid: {', '.join(DENSENET_ARCHS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        cfg = DENSENET_ARCHS[arch]
        growth, blocks = cfg["growth_rate"], cfg["block_config"]
        super().__init__(len(blocks), **kwargs)
        self._check_blocks(blocks, unit="dense layer")
        self.arch = arch

        c = cfg["num_init_features"]
        pool0 = (
            nn.MaxPool2d(3, 2, 1)
            if self.blur_pool is None
            else MaxBlurPool2d(3, 2, 1, self.blur_pool)
        )
        modules: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(c),
            relu0=nn.ReLU(inplace=True),
            pool0=pool0,
        )
        attn, infos = [], []
        stride, dilation = 4, 1
        for i in range(self.num_built_stages):
            block = DenseBlock(
                blocks[i], c, growth, bn_size, dilation, memory_efficient, self.conv3x3_layer(i),
                non_local=lambda j, i=i: self.non_local_layer(i, j),
            )  # fmt: skip
            modules[f"denseblock{i + 1}"] = block
            c = block.out_channels
            factory = self.attention_layer(i)
            attn.append(factory(c) if factory is not None else nn.Identity())
            infos.append(FeatureInfo(c, stride, f"features.denseblock{i + 1}"))
            if i == len(blocks) - 1:
                break
            if stride * 2 > output_stride:
                pool: nn.Module = nn.Identity()
                dilation *= 2
            else:
                pool = self.blur_layer(2) or nn.AvgPool2d(2, 2)
                stride *= 2
            if i + 1 < self.num_built_stages:
                modules[f"transition{i + 1}"] = Transition(c, c // 2, pool)
                c //= 2
        if self.num_built_stages == len(blocks):
            modules["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(modules)
        self.attn = nn.ModuleList(attn)

        for m in self.own_modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not no_weights(weights):
            load_weights(self, weights, torchvision_name=arch)
            self.pretrained = True
            self.weights_norm = weights_normalisation(weights, arch)
        self._set_feature_info(infos)

    def stage_modules(self) -> list[list[nn.Module]]:
        f = self.features
        groups: list[list[nn.Module]] = [[f.conv0, f.norm0]]
        for i in range(self.num_built_stages):
            groups.append([getattr(f, f"denseblock{i + 1}"), self.attn[i]])
            if hasattr(f, f"transition{i}"):
                groups[-1].append(getattr(f, f"transition{i}"))  # the transition into stage i
        return groups

    def forward_features(self, x: Tensor) -> list[Tensor]:
        outs = []
        stage = 0
        for name, module in self.features.named_children():
            x = module(x)
            if name.startswith("denseblock"):
                x = self.attn[stage](x)
                if stage == len(self.attn) - 1 and hasattr(self.features, "norm5"):
                    continue  # the last block's output goes through norm5 first
                if stage in self.out_indices:
                    outs.append(x)
                stage += 1
            elif name == "norm5":
                outs.append(F.relu(x))
        return outs
