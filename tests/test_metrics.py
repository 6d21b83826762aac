"""vtk.metrics: segmentation scores from a confusion matrix, against hand counts."""

from __future__ import annotations

import math

import pytest
import torch

from vtk.metrics import segmentation_scores


def test_segmentation_scores_by_hand() -> None:
    # rows: true class, columns: predicted; class 2 is predicted but never labelled,
    # class 3 is neither labelled nor predicted
    confusion = torch.tensor(
        [
            [50, 10, 0, 0],
            [5, 25, 10, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    s = segmentation_scores(confusion)
    # IoU: 50 / (60 + 55 - 50), 25 / (40 + 35 - 25), 0 / (0 + 10 - 0), NaN
    iou = [50 / 65, 25 / 50, 0.0]
    assert s["IoU"][:3].tolist() == pytest.approx(iou)
    assert math.isnan(s["IoU"][3])
    assert s["mIoU"].item() == pytest.approx(sum(iou) / 3)  # the predicted-only class counts
    # accuracy (recall) per class: 50/60, 25/40; NaN for classes without labels
    assert s["acc"][:2].tolist() == pytest.approx([50 / 60, 25 / 40])
    assert math.isnan(s["acc"][2]) and math.isnan(s["acc"][3])
    assert s["acc_class"].item() == pytest.approx((50 / 60 + 25 / 40) / 2)  # SegNet's class avg
    assert s["acc_global"].item() == pytest.approx(75 / 100)


def test_an_empty_matrix_gives_nan_not_an_error() -> None:
    s = segmentation_scores(torch.zeros(3, 3, dtype=torch.long))
    assert all(math.isnan(s[k].item()) for k in ("mIoU", "acc_global", "acc_class"))


def test_classification_scores_by_hand() -> None:
    from vtk.metrics import classification_scores

    confusion = torch.tensor([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2: never seen or predicted
    s = classification_scores(confusion)
    assert s["recall"][:2].tolist() == pytest.approx([5 / 6, 2 / 4])
    assert s["precision"][:2].tolist() == pytest.approx([5 / 7, 2 / 3])
    assert torch.isnan(s["recall"][2]) and torch.isnan(s["precision"][2])
    assert s["acc_class"].item() == pytest.approx((5 / 6 + 2 / 4) / 2)
