"""The DeepLabv3+ decoder against a reference written here from the paper (Chen et al., ECCV
2018, §3.1 Fig. 2 and §4.1): float64, the module's parameters, equal to 1e-6."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models import DeepLabV3PlusHead


def test_deeplabv3plus_decoder_is_the_papers() -> None:
    """ASPP on the last map, upsampled bilinearly to the stride-4 map; the stride-4 map reduced
    by 1x1 conv + BN + ReLU to 48 channels; concatenated; two 3x3 conv + BN + ReLU; 1x1
    classifier: logits at stride 4."""
    torch.manual_seed(0)
    head = DeepLabV3PlusHead([8, 16], num_classes=3, atrous_rates=(1, 2, 3), channels=8,
                             low_level_channels=4).double().eval()  # fmt: skip
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.2)
        for m in head.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    low = torch.randn(1, 8, 16, 20, generator=g, dtype=torch.float64)
    deep = torch.randn(1, 16, 4, 5, generator=g, dtype=torch.float64)

    def bn(x: Tensor, m: nn.BatchNorm2d) -> Tensor:
        s = (1, -1, 1, 1)
        return (x - m.running_mean.view(s)) / torch.sqrt(m.running_var.view(s) + m.eps) * (
            m.weight.view(s)
        ) + m.bias.view(s)

    with torch.no_grad():
        reduced = torch.relu(bn(F.conv2d(low, head.reduce[0].weight), head.reduce[1]))
        context = F.interpolate(
            head.aspp(deep), size=(16, 20), mode="bilinear", align_corners=False
        )
        y = torch.cat([context, reduced], 1)
        y = torch.relu(bn(F.conv2d(y, head.fuse[0].weight, padding=1), head.fuse[1]))
        y = torch.relu(bn(F.conv2d(y, head.fuse[3].weight, padding=1), head.fuse[4]))
        expected = F.conv2d(y, head.classifier.weight, head.classifier.bias)
        torch.testing.assert_close(head([low, deep]), expected, rtol=1e-6, atol=1e-6)
    assert reduced.shape[1] == 4 and expected.shape[-2:] == (16, 20)


def test_deeplabv3plus_drops_out_as_its_authors() -> None:
    """DeepLabV3+ (tensorflow/models research/deeplab/model.py): keep_prob 0.9 after the ASPP
    projection; torchvision's DeepLabV3 head keeps its 0.5."""
    from vtk.models.heads import DeepLabV3Head, DeepLabV3PlusHead

    def rates(head) -> list[float]:
        return [m.p for m in head.modules() if isinstance(m, nn.Dropout)]

    assert rates(DeepLabV3PlusHead([64, 128, 256, 512], 3)) == [0.1]
    assert rates(DeepLabV3Head([64, 128, 256, 512], 3)) == [0.5]
