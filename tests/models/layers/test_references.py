"""Deformable conv v1/v2 and BlurPool against references written here from their papers'
equations (float64, parameters copied from the module, outputs equal to 1e-6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vtk.models.layers import BlurPool2d, DeformConv2d
from vtk.models.layers.blur_pool import MaxBlurPool2d

TOL = dict(rtol=1e-6, atol=1e-6)


def _sample(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear interpolation of (C, H, W) at (y, x); positions outside read as zero."""
    c, h, w = image.shape
    out = np.zeros(c)
    y0, x0 = math.floor(y), math.floor(x)
    for n in (y0, y0 + 1):
        for m in (x0, x0 + 1):
            if 0 <= n < h and 0 <= m < w:
                out += (1 - abs(y - n)) * (1 - abs(x - m)) * image[:, n, m]
    return out


@pytest.mark.parametrize("modulated", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_deformable_conv_is_the_papers_sum(modulated: bool, stride: int, dilation: int) -> None:
    """Dai et al. Eq. 2 (v1) / Zhu et al. Eq. 1 (v2): y(p0) = sum_k w_k x(p0 + p_k + dp_k) m_k,
    with p0 on the strided grid, p_k the dilated 3x3 taps, dp_k = (dy, dx) the offset conv's
    2k-th and 2k+1-th channels, m_k = sigmoid of its channel 2K + k (v2) or 1 (v1)."""
    torch.manual_seed(0)
    conv = DeformConv2d(
        3, 4, 3, stride, padding=dilation, dilation=dilation, bias=True, modulated=modulated
    ).double()
    with torch.no_grad():  # offsets of a few pixels, so taps land between and outside pixels
        conv.offset.weight.normal_(0, 0.5)
        conv.offset.bias.normal_(0, 1.0)
        conv.bias.normal_()
    x = torch.randn(1, 3, 7, 8, dtype=torch.float64)
    raw = conv.offset(x)[0].detach().numpy()
    image, w, b = x[0].numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy()
    out_h, out_w = raw.shape[1:]
    taps = [(i * dilation, j * dilation) for i in range(3) for j in range(3)]
    expected = np.zeros((4, out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            acc = b.copy()
            for k, (ty, tx) in enumerate(taps):
                dy, dx = raw[2 * k, oy, ox], raw[2 * k + 1, oy, ox]
                m = 1 / (1 + math.exp(-raw[18 + k, oy, ox])) if modulated else 1.0
                y = oy * stride - dilation + ty + dy
                xx = ox * stride - dilation + tx + dx
                acc += w[:, :, ty // dilation, tx // dilation] @ _sample(image, y, xx) * m
            expected[:, oy, ox] = acc
    with torch.no_grad():
        torch.testing.assert_close(conv(x)[0], torch.from_numpy(expected), **TOL)


@pytest.mark.parametrize("modulated", [False, True], ids=["v1", "v2"])
def test_deformable_conv_starts_as_a_plain_conv(modulated: bool) -> None:
    """Offsets start at zero (both papers): v1 is the plain conv, v2 half of it (m = 0.5)."""
    conv = DeformConv2d(3, 4, modulated=modulated).eval()
    x = torch.randn(2, 3, 9, 10)
    plain = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    torch.testing.assert_close(conv(x), plain * (0.5 if modulated else 1.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filter_size", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
def test_blur_pool_is_a_binomial_low_pass_then_subsample(filter_size: int, size) -> None:
    """Zhang 2019 §3: the filter is the outer product of the binomial row [C(n-1, k)] normalised
    to sum 1 (n = 3: [1, 2, 1] / 4), applied with reflection padding ((n-1)//2 before,
    ceil((n-1)/2) after), keeping every second output."""
    row = np.array([math.comb(filter_size - 1, k) for k in range(filter_size)], dtype=float)
    kernel = np.outer(row, row) / row.sum() ** 2
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    lo, hi = (filter_size - 1) // 2, math.ceil((filter_size - 1) / 2)
    padded = np.pad(x[0].numpy(), ((0, 0), (lo, hi), (lo, hi)), mode="reflect")
    h, w = size
    expected = np.zeros((2, math.ceil(h / 2), math.ceil(w / 2)))
    for i in range(expected.shape[1]):
        for j in range(expected.shape[2]):
            window = padded[:, 2 * i : 2 * i + filter_size, 2 * j : 2 * j + filter_size]
            expected[:, i, j] = (window * kernel).sum((1, 2))
    got = BlurPool2d(filter_size, 2).double()(x)[0]
    torch.testing.assert_close(got, torch.from_numpy(expected), **TOL)


def test_max_blur_pool_is_max_at_stride_one_then_blur() -> None:
    """MaxPool (stride s) becomes MaxPool (stride 1) -> BlurPool (stride s), §3.2 Fig. 2."""
    x = torch.randn(1, 3, 10, 10, dtype=torch.float64)
    pool = MaxBlurPool2d(3, 2, 1, filter_size=3).double()
    expected = BlurPool2d(3, 2).double()(torch.nn.functional.max_pool2d(x, 3, 1, 1))
    torch.testing.assert_close(pool(x), expected, **TOL)
