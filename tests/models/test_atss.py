"""ATSS: the matching against a plain transcription of the paper's Algorithm 1, and the
detector as one file on the one-stage base (a training step, detections, vtk list)."""

from __future__ import annotations

import statistics

import pytest
import torch

from vtk.errors import ConfigError
from vtk.models import ATSS, ResNet
from vtk.models.atss import atss_match


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def _reference(anchors, boxes, per_level, k):
    """Algorithm 1, one object and one anchor at a time."""
    anchors, boxes = anchors.tolist(), boxes.tolist()
    centre = [((a[0] + a[2]) / 2, (a[1] + a[3]) / 2) for a in anchors]
    best = [(-1.0, -1)] * len(anchors)
    for g, box in enumerate(boxes):
        gc = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        candidates, start = [], 0
        for n in per_level:
            level = range(start, start + n)
            dist = sorted(
                level, key=lambda i: (centre[i][0] - gc[0]) ** 2 + (centre[i][1] - gc[1]) ** 2
            )
            candidates += dist[: min(k, n)]
            start += n
        ious = [_iou(anchors[i], box) for i in candidates]
        threshold = statistics.mean(ious) + statistics.stdev(ious)
        for i, iou in zip(candidates, ious):
            x, y = centre[i]
            inside = box[0] < x < box[2] and box[1] < y < box[3]
            if iou >= threshold and inside and iou > best[i][0]:
                best[i] = (iou, g)
    return [g for _, g in best]


def _grid(stride: int, size: int, side: int) -> torch.Tensor:
    c = torch.arange(side, dtype=torch.float64) * stride + stride / 2
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    centres = torch.stack([cx.flatten(), cy.flatten()], 1)
    return torch.cat([centres - size / 2, centres + size / 2], 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_is_algorithm_1(seed: int) -> None:
    torch.manual_seed(seed)
    levels = [_grid(8, 64, 16), _grid(16, 128, 8), _grid(32, 256, 4)]  # a 128x128 image
    anchors = torch.cat(levels)
    xy = torch.rand(5, 2, dtype=torch.float64) * 90
    boxes = torch.cat([xy, xy + 8 + torch.rand(5, 2, dtype=torch.float64) * 60], 1)
    matched = atss_match(anchors, boxes, [len(v) for v in levels], topk=9)
    expected = _reference(anchors, boxes, [len(v) for v in levels], 9)
    assert matched.tolist() == expected
    assert (matched >= 0).sum() > 0  # some positives, each on an object that holds it


def test_no_objects_no_positives() -> None:
    anchors = _grid(8, 64, 4)
    assert (atss_match(anchors, anchors[:0], [16]) == -1).all()


def test_atss_trains_detects_and_is_listed() -> None:
    torch.manual_seed(0)
    model = ATSS(ResNet("resnet18", out_indices=(1, 2, 3)), 3, min_size=128, max_size=160)
    images = [torch.rand(3, 120, 150), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[30.0, 30.0, 100.0, 120.0], [5.0, 5.0, 40.0, 30.0]]),
         "labels": torch.tensor([0, 1])},
    ]  # fmt: skip
    losses = model.train()(images, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    with torch.no_grad():
        detections = model.eval()(images)
    assert [set(d) for d in detections] == [{"boxes", "scores", "labels"}] * 2
    assert model.resize_range() == (128, 160)
    # anchors: one square per place, 8 strides wide
    assert model.anchor_generator.sizes == ((64,), (128,), (256,), (512,), (1024,))
    from vtk.catalog import _models

    assert "ATSS" in _models()


def test_atss_refuses_coco_weights() -> None:
    with pytest.raises(ConfigError, match="no ATSS weights"):
        ATSS(ResNet("resnet18", out_indices=(1, 2, 3)), 3, weights="coco")
