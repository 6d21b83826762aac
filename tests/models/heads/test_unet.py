"""U-Net's decoder: Ronneberger's network, built by hand here, is UNetEncoder + UNetHead
parameter for parameter and output for output; on a vtk ResNet (with its stride-2 stem) and a
timm network the decoder reaches full resolution and every parameter learns."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
from torch import nn

from vtk.models import Segmenter
from vtk.models.backbones import ResNet, TimmBackbone, UNetEncoder
from vtk.models.heads import UNetHead


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


class HandUNet(nn.Module):
    """Ronneberger et al. 2015, Fig. 1, with padded convs and BatchNorm: 4 max-pool steps down
    (64-128-256-512-1024), 4 up-convolutions (2x2 transposed, halving) each followed by the
    concatenation of the mirrored map and two 3x3 convs, a 1x1 conv to the classes."""

    def __init__(self, classes: int, w: int = 64) -> None:
        super().__init__()
        widths = [w, 2 * w, 4 * w, 8 * w, 16 * w]
        self.down = nn.ModuleList(
            [_double(3, w)]
            + [nn.Sequential(nn.MaxPool2d(2), _double(a, b)) for a, b in itertools.pairwise(widths)]
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(b, a, 2, 2) for a, b in itertools.pairwise(widths)
        )
        self.conv = nn.ModuleList(_double(2 * a, a) for a in widths[:-1])
        self.out = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up, conv in reversed(list(zip(self.up, self.conv))):
            x = conv(torch.cat([up(x), skips.pop()], 1))
        return self.out(x)


def _ordered(module: nn.Module) -> list[torch.Tensor]:
    return [p for _, p in module.state_dict().items()]


def test_the_classic_unet_is_ronnebergers_parameter_for_parameter() -> None:
    ours = Segmenter(UNetEncoder(), head=partial(UNetHead, upsample="transpose"), num_classes=2)
    hand = HandUNet(2)
    n = sum(p.numel() for p in hand.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n == 31_037_698
    # the same tensors in the same order: copy the hand-built network's into ours, same output
    ours_keys = list(ours.state_dict())
    hand_tensors = [hand.state_dict()[k] for k in _hand_order(hand)]
    assert [tuple(t.shape) for t in hand_tensors] == [
        tuple(ours.state_dict()[k].shape) for k in ours_keys
    ]
    ours.load_state_dict(dict(zip(ours_keys, hand_tensors)))
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(ours.eval()(x)["out"], hand.eval()(x), atol=1e-5)


def _hand_order(hand: HandUNet) -> list[str]:
    """The hand-built network's keys in the order vtk builds them: encoder, then per level
    (deepest first) the up-convolution and its convs, then the classifier."""
    keys = list(hand.state_dict())
    order = [k for k in keys if k.startswith("down.")]
    for level in reversed(range(len(hand.up))):
        order += [k for k in keys if k.startswith((f"up.{level}.", f"conv.{level}."))]
    return order + [k for k in keys if k.startswith("out.")]


@pytest.mark.parametrize(
    "backbone",
    [
        lambda: ResNet("resnet18", stem_out=True),
        lambda: TimmBackbone("resnet18", stem_out=True),
        lambda: TimmBackbone("efficientnet_b0", stem_out=True),
        lambda: UNetEncoder(base_channels=8),
    ],
    ids=["vtk-resnet18", "timm-resnet18", "timm-efficientnet_b0", "unet8"],
)
def test_the_decoder_on_any_backbone_reaches_full_resolution_and_learns(backbone) -> None:
    net = backbone()
    model = Segmenter(net, head=UNetHead, num_classes=3)
    head = model.classifier
    # one block per skip (the stem included), then to stride 1 without skips; widths mirrored
    assert len(head.blocks) == len(net.feature_info) - 1
    assert len(head.final_blocks) == {1: 0, 2: 1}[net.strides[0]]
    assert [b.conv[3].out_channels for b in head.blocks] == net.out_channels[-2::-1]
    out = model(torch.randn(2, 3, 64, 96))["out"]
    assert out.shape == (2, 3, 64, 96)
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_resnet_without_its_stem_gets_two_blocks_to_full_resolution() -> None:
    model = Segmenter(ResNet("resnet18"), head=UNetHead, num_classes=2)
    assert len(model.classifier.final_blocks) == 2  # stride 4 -> 2 -> 1
    assert model(torch.randn(1, 3, 64, 64))["out"].shape == (1, 2, 64, 64)


def test_a_backbone_without_a_stride_2_stem_says_so() -> None:
    with pytest.raises(ValueError, match="no stride-2 stem output"):
        TimmBackbone("convnext_atto", stem_out=True)
