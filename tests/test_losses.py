"""vtk.losses by hand: class weights, Dice, Focal, OHEM; ignored pixels never count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vtk.losses import CrossEntropyLoss, DiceLoss, FocalLoss

IGNORE = 255


def _case():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    target[0, 0, :3] = IGNORE
    return logits, target


@pytest.mark.parametrize("loss", [CrossEntropyLoss(), CrossEntropyLoss(class_weights=[1, 2, 3]),
                                  DiceLoss(), FocalLoss(), CrossEntropyLoss(ohem=True, ohem_min_kept=5)])  # fmt: skip
def test_ignored_pixels_never_count(loss) -> None:
    logits, target = _case()
    changed = logits.clone()
    changed[0, :, 0, :3] = torch.randn(3, 3, dtype=torch.float64) * 10
    torch.testing.assert_close(loss(logits, target, IGNORE), loss(changed, target, IGNORE))
    all_ignored = torch.full_like(target, IGNORE)
    assert loss(logits, all_ignored, IGNORE).item() == pytest.approx(
        0.0 if not isinstance(loss, DiceLoss) else loss(logits, all_ignored, IGNORE).item()
    )  # a crop with nothing labelled: 0, not NaN
    assert not math.isnan(loss(logits, all_ignored, IGNORE).item())


def test_class_weights_are_a_weighted_mean_as_pytorchs() -> None:
    logits, target = _case()
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    per_pixel = -F.log_softmax(logits, 1).gather(1, target.clamp(max=2).unsqueeze(1))[:, 0]
    valid = target != IGNORE
    weights = w[target.clamp(max=2)] * valid
    expected = (per_pixel * weights).sum() / weights.sum()
    got = CrossEntropyLoss(class_weights=[1, 2, 3])(logits, target, IGNORE)
    torch.testing.assert_close(got, expected.float())


def test_dice_by_hand() -> None:
    logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.0]]]])  # 1 image, 2 classes, 1x2 pixels
    target = torch.tensor([[[0, 1]]])
    p = torch.softmax(logits, 1)[0, :, 0]  # (classes, pixels)
    dice0 = (2 * p[0, 0] + 1) / (p[0].sum() + 1 + 1)
    dice1 = (2 * p[1, 1] + 1) / (p[1].sum() + 1 + 1)
    expected = 1 - (dice0 + dice1) / 2
    torch.testing.assert_close(DiceLoss()(logits, target, IGNORE), expected)


def test_focal_by_hand_and_gamma_zero_is_cross_entropy() -> None:
    logits, target = _case()
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target, IGNORE), ce.float())
    p_t = torch.softmax(logits, 1).gather(1, target.clamp(max=2).unsqueeze(1))[:, 0]
    valid = target != IGNORE
    expected = (-((1 - p_t) ** 2) * p_t.log())[valid].mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target, IGNORE), expected.float())


def test_ohem_keeps_the_hard_pixels() -> None:
    logits, target = _case()
    valid = target != IGNORE
    p_t = torch.softmax(logits, 1).gather(1, target.clamp(max=2).unsqueeze(1))[:, 0]
    per_pixel = -p_t.log()
    # threshold 0.7 with at least 5 kept: the kept are the pixels whose p_t < max(5th, 0.7)
    fifth = p_t[valid].sort().values[4].item()
    keep = valid & (p_t < max(fifth, 0.7))
    expected = per_pixel[keep].mean()
    got = CrossEntropyLoss(ohem=True, ohem_thresh=0.7, ohem_min_kept=5)(logits, target, IGNORE)
    torch.testing.assert_close(got, expected.float())
    assert keep.sum() < valid.sum()  # some easy pixels were left out
