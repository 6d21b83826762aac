"""Each attention plug-in against an independent reference written here from its paper's
equations and the authors' published structure: the parameters are copied from the module,
the computation is spelled out in float64 with torch primitives, and the outputs must agree to
1e-6. Then what the authors' initialisation promises (identity blocks, a half-open gate)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtk.models.attention import CBAM, ECA, GlobalContext, NonLocal2d, SpatialTransformer
from vtk.models.attention import SqueezeExcite as SE

TOL = dict(rtol=1e-6, atol=1e-6)


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in float64 and eval mode with every parameter and BN statistic random (so a
    zero-initialised layer or an identity BN cannot hide a difference)."""
    g = torch.Generator().manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module


def bn(x: Tensor, m: nn.BatchNorm2d) -> Tensor:
    """BN at inference: (x - mean) / sqrt(var + eps) * weight + bias."""
    shape = (1, -1, 1, 1)
    return (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * (
        m.weight.view(shape)
    ) + m.bias.view(shape)


def dense(v: Tensor, conv: nn.Conv2d) -> Tensor:
    """A 1x1 conv on a (B, C) vector: W v + b."""
    w = conv.weight.flatten(1)
    return v @ w.T + (conv.bias if conv.bias is not None else 0)


def x64(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_se_is_squeeze_excitation_scale() -> None:
    """Hu et al. Eq. 2-4: z = GAP(x), s = sigmoid(W2 relu(W1 z)), y = s * x."""
    m, x = randomised(SE(32, reduction=8)), x64(2, 32, 5, 7)
    z = x.mean((2, 3))
    s = torch.sigmoid(dense(torch.relu(dense(z, m.fc1)), m.fc2))
    torch.testing.assert_close(m(x), x * s[:, :, None, None], **TOL)
    assert m.fc1.out_channels == 4


def test_cbam_is_channel_then_spatial_attention_with_max_mean_order() -> None:
    """Woo et al. Eq. 2-3: M_c = sigmoid(MLP(avg) + MLP(max)); M_s = sigmoid(f7x7([max; avg]))
    with the authors' BN after the 7x7 conv and their [max, mean] channel order."""
    m, x = randomised(CBAM(16, reduction=4)), x64(2, 16, 6, 5)
    w1, w2 = m.channel.mlp[0], m.channel.mlp[2]

    def mlp(v: Tensor) -> Tensor:
        return dense(torch.relu(dense(v, w1)), w2)

    xc = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    desc = torch.stack([xc.amax(1), xc.mean(1)], dim=1)  # [max, mean]
    gate = torch.sigmoid(bn(F.conv2d(desc, m.spatial.conv.weight, padding=3), m.spatial.bn))
    torch.testing.assert_close(m(x), xc * gate, **TOL)


def test_cbam_spatial_gate_starts_half_open() -> None:
    """The authors' ResNet sets the spatial gate's BN weight to 0: the gate is 0.5 everywhere."""
    m = CBAM(16).eval()
    assert m.spatial.bn.weight.abs().max() == 0 and m.spatial.bn.momentum == 0.01
    x = torch.randn(2, 16, 4, 4)
    xc = m.channel(x)
    torch.testing.assert_close(m(x), 0.5 * xc)


@pytest.mark.parametrize("channels,k", [(16, 3), (64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size_and_channel_conv(channels: int, k: int) -> None:
    """Wang et al. Eq. 12: k = |log2(C)/gamma + b/gamma|_odd with gamma 2, b 1 (the authors'
    code rounds down, then to the next odd number); then a k-tap conv along the channels of
    the pooled vector, zero-padded, and a sigmoid gate."""
    m = randomised(ECA(channels))
    assert m.conv.kernel_size == (k,)
    x = x64(2, channels, 3, 3)
    y = F.pad(x.mean((2, 3)), (k // 2, k // 2))
    w = m.conv.weight.flatten()
    gate = torch.stack([(y[:, c : c + k] * w).sum(1) for c in range(channels)], dim=1)
    torch.testing.assert_close(m(x), x * torch.sigmoid(gate)[:, :, None, None], **TOL)


def test_eca_kernels_by_the_formula_or_per_stage_as_the_released_resnet50() -> None:
    """The default follows Eq. 12 (ResNet-50's stages of 256-2048 channels: 5, 5, 5, 7, as
    timm); the authors' released ECA-ResNet-50 uses 3, 5, 5, 7: a list gives one per stage."""
    from vtk.models.backbones import create_backbone

    def kernels(model) -> list[int]:
        return [layer[0].attn.conv.kernel_size[0] for layer in
                (model.layer1, model.layer2, model.layer3, model.layer4)]  # fmt: skip

    assert kernels(create_backbone("resnet50", attention="eca")) == [5, 5, 5, 7]
    released = create_backbone(
        "resnet50", attention="eca", attention_args={"kernel_size": [3, 5, 5, 7]}
    )
    assert kernels(released) == [3, 5, 5, 7]
    with pytest.raises(ValueError, match="one per stage"):
        create_backbone("resnet50", attention="eca", attention_args={"kernel_size": [3, 5]})


def test_gc_is_context_transform_fusion() -> None:
    """Cao et al. Eq. 3 / Fig. 4: c = sum_j softmax_j(W_k x_j) x_j; y = x + W_v2 ReLU(LN(W_v1 c))."""
    m, x = randomised(GlobalContext(32, reduction=4)), x64(2, 32, 4, 6)
    flat = x.flatten(2)  # (B, C, HW)
    a = torch.softmax(
        torch.einsum("c,bcn->bn", m.context.weight.flatten(), flat) + m.context.bias, 1
    )
    context = torch.einsum("bcn,bn->bc", flat, a)
    h = dense(context, m.transform[0])
    ln = m.transform[1]
    mu, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
    h = (h - mu) / torch.sqrt(var + ln.eps) * ln.weight.flatten() + ln.bias.flatten()
    t = dense(torch.relu(h), m.transform[3])
    torch.testing.assert_close(m(x), x + t[:, :, None, None], **TOL)


def test_gc_initialisation_is_the_authors() -> None:
    """Kaiming-normal (fan in) context conv with zero bias; the last conv zero: identity."""
    torch.manual_seed(0)
    m = GlobalContext(256).eval()
    assert m.context.bias.abs().max() == 0
    assert m.context.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.15)
    x = torch.randn(2, 256, 5, 5)
    torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_non_local_is_the_embedded_gaussian_block(sub_sample: bool, scale: bool) -> None:
    """Wang et al. Eq. 1-3 / Fig. 2: y_i = sum_j softmax_j(theta_i . phi_j / sqrt(C')) g_j,
    z = x + BN(W_z y); phi and g on the input max-pooled by 2 (the authors' subsampling)."""
    m, x = randomised(NonLocal2d(16, sub_sample=sub_sample, scale=scale)), x64(2, 16, 5, 6)
    pooled = F.max_pool2d(x, 2, ceil_mode=True) if sub_sample else x

    def proj(t: Tensor, conv: nn.Conv2d) -> Tensor:  # (B, C, H, W) -> (B, positions, C')
        return torch.einsum("oc,bcn->bno", conv.weight.flatten(1), t.flatten(2)) + conv.bias

    theta, phi, g = proj(x, m.theta), proj(pooled, m.phi), proj(pooled, m.g)
    logits = theta @ phi.transpose(1, 2)
    if scale:
        logits = logits / math.sqrt(8)
    y = torch.softmax(logits, dim=-1) @ g  # (B, HW, C')
    wz = torch.einsum("oc,bnc->bon", m.out.weight.flatten(1), y).reshape(2, 16, 5, 6)
    torch.testing.assert_close(m(x), x + bn(wz, m.bn), **TOL)


def test_non_local_initialisation_is_the_authors_and_the_block_starts_as_identity() -> None:
    torch.manual_seed(0)
    m = NonLocal2d(1024).eval()
    for conv in (m.theta, m.phi, m.g, m.out):
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert all(c.bias.abs().max() == 0 for c in (m.theta, m.phi, m.g))
    assert m.scale  # the authors' USE_SCALE and mmcv's use_scale default
    x = torch.randn(1, 1024, 6, 6)
    torch.testing.assert_close(m(x), x)


def _bilinear(image: Tensor, y: float, x: float) -> Tensor:
    """Image (C, H, W) at a real position, zero outside: sum over the four neighbours of
    max(0, 1 - |y - n|) max(0, 1 - |x - m|) U_nm (Jaderberg et al. Eq. 5)."""
    c, h, w = image.shape
    out = torch.zeros(c, dtype=image.dtype)
    for n in (math.floor(y), math.floor(y) + 1):
        for m in (math.floor(x), math.floor(x) + 1):
            if 0 <= n < h and 0 <= m < w:
                out += max(0.0, 1 - abs(y - n)) * max(0.0, 1 - abs(x - m)) * image[:, n, m]
    return out


def test_stn_samples_the_input_where_its_affine_transform_says() -> None:
    """Jaderberg et al. Eq. 1 and 5: each output pixel's normalised position (pixel centres in
    [-1, 1]) goes through the 2x3 affine A_theta; the input is sampled there bilinearly."""
    m = randomised(SpatialTransformer(3, hidden=8, loc_size=16))
    x = x64(1, 3, 6, 7)
    small = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    a = m.theta(m.localization(small)).view(2, 3)
    h, w = x.shape[-2:]
    expected = torch.zeros_like(x)
    for i in range(h):
        for j in range(w):
            xt, yt = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
            xs, ys = (a @ torch.tensor([xt, yt, 1.0], dtype=torch.float64)).tolist()
            expected[0, :, i, j] = _bilinear(x[0], ((ys + 1) * h - 1) / 2, ((xs + 1) * w - 1) / 2)
    torch.testing.assert_close(m(x), expected, **TOL)


def test_stn_starts_as_the_identity() -> None:
    m = SpatialTransformer(3).eval()
    x = torch.randn(2, 3, 9, 11)
    torch.testing.assert_close(m(x), x, rtol=1e-5, atol=1e-5)
