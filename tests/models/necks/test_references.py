"""ASFF, RFB, RFB-s and ASPP against references written here from their papers' equations and
figures: every kernel size, rate, stride and branch order is spelled out in the test, the
parameters are the module's, the computation is float64 torch primitives, equal to 1e-6."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.necks import ASPP
from vtk.models.necks.asff import ASFF
from vtk.models.necks.rfb import RFB, RFBs

TOL = dict(rtol=1e-6, atol=1e-6)


def randomised(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return module


def bn(x: Tensor, m: nn.BatchNorm2d) -> Tensor:
    s = (1, -1, 1, 1)
    scale = m.weight.view(s) / torch.sqrt(m.running_var.view(s) + m.eps)
    return (x - m.running_mean.view(s)) * scale + m.bias.view(s)


def unit(x: Tensor, u: nn.Sequential, stride=1, padding=0, dilation=1, act=None) -> Tensor:
    """conv (the unit's weights, this geometry) -> BN -> activation."""
    y = bn(F.conv2d(x, u[0].weight, u[0].bias, stride, padding, dilation), u[1])
    return y if act is None else act(y)


def x64(*shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.1)


def test_asff_fuses_three_levels_with_softmax_weights() -> None:
    """Liu et al. §3.1-3.2: each level resized to level l (coarser: 1x1 conv then nearest
    upsampling; one finer: 3x3 stride-2 conv; two finer: stride-2 max-pool first), then
    y = a x^0 + b x^1 + c x^2 with (a, b, c) = softmax of a 1x1 conv on the concatenation of
    16-channel compressions (Eq. 1-2), then a 3x3 conv. Conv-BN-LeakyReLU(0.1) units."""
    feats = [x64(1, 8, 16, 16), x64(1, 8, 8, 8), x64(1, 8, 4, 4)]
    for level in range(3):
        m = randomised(ASFF(8, level, 3, compress_channels=4))
        size = feats[level].shape[-2:]
        resized = []
        for j, f in enumerate(feats):
            r = m.resize[j]
            if j == level:
                resized.append(f)
            elif j > level:
                y = unit(f, r, act=leaky)
                resized.append(F.interpolate(y, size=size, mode="nearest"))
            else:
                if level - j == 2:
                    f = F.max_pool2d(f, 3, 2, 1)
                resized.append(unit(f, r[-1], stride=2, padding=1, act=leaky))
        compressed = torch.cat([unit(r, w, act=leaky) for r, w in zip(resized, m.weight)], 1)
        alpha = torch.softmax(
            F.conv2d(compressed, m.weight_levels.weight, m.weight_levels.bias), dim=1
        )
        fused = sum(alpha[:, i : i + 1] * r for i, r in enumerate(resized))
        expected = unit(fused, m.expand, padding=1, act=leaky)
        torch.testing.assert_close(m(feats), expected, **TOL)


def test_rfb_has_the_papers_three_branches() -> None:
    """Liu et al. Fig. 4(a): branches 1x1 -> 3x3 rate 1; 1x1 -> 3x3 -> 3x3 rate 3;
    1x1 -> 3x3 -> 3x3 (a 5x5) -> 3x3 rate 5; concatenated, 1x1, scaled, plus a 1x1 shortcut,
    ReLU. BN after every conv, ReLU after all but each branch's last."""
    for stride in (1, 2):
        m, x = randomised(RFB(32, 16, stride=stride, scale=0.5)), x64(1, 32, 9, 9)
        relu = torch.relu
        b0 = unit(unit(x, m.branch0[0], stride, act=relu), m.branch0[1], padding=1, dilation=1)
        b1 = unit(x, m.branch1[0], act=relu)
        b1 = unit(b1, m.branch1[1], stride, padding=1, act=relu)
        b1 = unit(b1, m.branch1[2], padding=3, dilation=3)
        b2 = unit(x, m.branch2[0], act=relu)
        b2 = unit(b2, m.branch2[1], padding=1, act=relu)
        b2 = unit(b2, m.branch2[2], stride, padding=1, act=relu)
        b2 = unit(b2, m.branch2[3], padding=5, dilation=5)
        merged = unit(torch.cat([b0, b1, b2], 1), m.merge)
        expected = relu(merged * 0.5 + unit(x, m.shortcut, stride))
        torch.testing.assert_close(m(x), expected, **TOL)


def test_rfb_rates_follow_the_argument() -> None:
    """The authors' released code uses (v, v + 1, 2v + 1) for its `visual` v."""
    m = RFB(32, 16, rates=(2, 3, 5))
    assert [m.branch0[1][0].dilation, m.branch1[2][0].dilation, m.branch2[3][0].dilation] == [
        (2, 2), (3, 3), (5, 5),
    ]  # fmt: skip


def test_rfb_s_has_the_papers_four_branches() -> None:
    """Fig. 4(b): 1x1 -> 3x3 rate 1; 1x1 -> 3x1 -> 3x3 rate 3; 1x1 -> 1x3 -> 3x3 rate 3;
    1x1 -> 1x3 -> 3x1 -> 3x3 rate 5 (the 5x5 as two asymmetric convs)."""
    m, x = randomised(RFBs(32, 16, scale=0.5)), x64(1, 32, 9, 9)
    relu = torch.relu
    b0 = unit(unit(x, m.branch0[0], act=relu), m.branch0[1], padding=1)
    b1 = unit(x, m.branch1[0], act=relu)
    b1 = unit(b1, m.branch1[1], padding=(1, 0), act=relu)
    b1 = unit(b1, m.branch1[2], padding=3, dilation=3)
    b2 = unit(x, m.branch2[0], act=relu)
    b2 = unit(b2, m.branch2[1], padding=(0, 1), act=relu)
    b2 = unit(b2, m.branch2[2], padding=3, dilation=3)
    b3 = unit(x, m.branch3[0], act=relu)
    b3 = unit(b3, m.branch3[1], padding=(0, 1), act=relu)
    b3 = unit(b3, m.branch3[2], padding=(1, 0), act=relu)
    b3 = unit(b3, m.branch3[3], padding=5, dilation=5)
    merged = unit(torch.cat([b0, b1, b2, b3], 1), m.merge)
    torch.testing.assert_close(m(x), relu(merged * 0.5 + unit(x, m.shortcut)), **TOL)


def test_aspp_is_four_atrous_branches_and_image_pooling() -> None:
    """DeepLabv3 §3.3: [1x1; 3x3 at rates r1, r2, r3; image pooling (GAP, 1x1, upsampled)],
    each with BN and ReLU, concatenated, projected by 1x1 + BN + ReLU."""
    rates = (2, 3, 5)
    m, x = randomised(ASPP(16, rates, out_channels=8)), x64(2, 16, 9, 11)
    relu = torch.relu
    branches = [unit(x, m.convs[0], act=relu)]
    branches += [
        unit(x, m.convs[i + 1], padding=r, dilation=r, act=relu) for i, r in enumerate(rates)
    ]
    pool = m.convs[4]
    pooled = unit(x.mean((2, 3), keepdim=True), nn.Sequential(pool[1], pool[2]), act=relu)
    branches.append(pooled.expand(-1, -1, 9, 11))  # bilinear from 1x1: a constant map
    expected = unit(torch.cat(branches, 1), m.project, act=relu)
    torch.testing.assert_close(m(x), expected, **TOL)
