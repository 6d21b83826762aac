"""DeformConv2d: zero offsets give the plain convolution, and offsets a diverged run produces
(NaN, infinite, huge) give a defined result instead of crashing torchvision's kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vtk.models.layers import DeformConv2d


def _conv(modulated: bool = False) -> DeformConv2d:
    torch.manual_seed(0)
    return DeformConv2d(4, 6, kernel_size=3, padding=1, modulated=modulated).eval()


def test_zero_offsets_are_the_plain_convolution() -> None:
    conv, x = _conv(), torch.randn(2, 4, 9, 11)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=1), rtol=1e-5, atol=1e-5)


def test_non_finite_and_huge_offsets_do_not_crash() -> None:
    x = torch.randn(2, 4, 9, 11)
    for modulated in (False, True):
        conv = _conv(modulated)
        taps = 2 * 9
        with torch.no_grad():
            conv.offset.bias[:taps] = float("nan")  # NaN offsets: treated as 0
        plain = F.conv2d(x, conv.weight, padding=1) * (0.5 if modulated else 1.0)
        torch.testing.assert_close(conv(x), plain, rtol=1e-5, atol=1e-5)
        for far in (float("inf"), -float("inf"), 1e30, 1e6):
            with torch.no_grad():
                conv.offset.bias[:taps] = far  # every tap far outside the map: zeros
            assert torch.equal(conv(x), torch.zeros(2, 6, 9, 11)), far
