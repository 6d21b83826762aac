"""Per-step LR schedules: formulas, warm-up, and exact continuation after a resume."""

from __future__ import annotations

import math

import pytest
import torch

from vtk.optim import WarmupCosineLR, WarmupMultiStepLR, WarmupPolyLR


def _lrs(scheduler_cls, steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = scheduler_cls(opt, steps, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_poly_is_deeplabs_formula() -> None:
    lrs = _lrs(WarmupPolyLR, 100, power=0.9)
    for step in (0, 10, 50, 99):
        assert lrs[step] == pytest.approx(0.1 * (1 - step / 100) ** 0.9)


def test_poly_with_a_floor_is_mmsegmentations_formula() -> None:
    lrs = _lrs(WarmupPolyLR, 100, power=0.9, min_factor=0.01)  # lr 0.1, min_lr 0.001
    for step in (0, 10, 50, 99):
        assert lrs[step] == pytest.approx((0.1 - 0.001) * (1 - step / 100) ** 0.9 + 0.001)


def test_linear_warmup_then_the_schedule() -> None:
    lrs = _lrs(WarmupPolyLR, 100, power=1.0, warmup_steps=10, warmup_factor=0.01)
    assert lrs[0] == pytest.approx(0.1 * 0.01)
    assert lrs[5] == pytest.approx(0.1 * 0.95 * (0.01 * 0.5 + 0.5))
    assert lrs[10] == pytest.approx(0.1 * 0.9)


def test_cosine_and_multistep() -> None:
    lrs = _lrs(WarmupCosineLR, 100, min_factor=0.1)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[50] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    lrs = _lrs(WarmupMultiStepLR, 100, milestones=[0.5, 0.75], gamma=0.1)
    assert (
        lrs[49] == pytest.approx(0.1)
        and lrs[50] == pytest.approx(0.01)
        and lrs[75] == pytest.approx(0.001)
    )
    lrs = _lrs(WarmupMultiStepLR, 100, milestones=[30], gamma=0.5)
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.05)


def test_resume_continues_exactly() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = WarmupPolyLR(opt, 100, warmup_steps=5)
    for _ in range(37):
        opt.step()
        sched.step()
    state_o, state_s = opt.state_dict(), sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = WarmupPolyLR(opt2, 100, warmup_steps=5)
    opt2.load_state_dict(state_o)
    sched2.load_state_dict(state_s)
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_bad_arguments() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupPolyLR(opt, 10, warmup_steps=-1)
    assert (
        WarmupPolyLR(opt, 10, warmup_steps=10).warmup_steps == 0
    )  # a run shorter than its warm-up
    with pytest.raises(ValueError, match="total_steps"):
        WarmupPolyLR(opt, 0)
