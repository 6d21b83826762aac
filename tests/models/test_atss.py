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


# -- the authors' head, losses and post-processing (sfzhang15/ATSS, atss_core/modeling/rpn/atss)
def _their_decode(preds, anchors, to_remove=0.0):
    """BoxCoder.decode of atss_core (REGRESSION_TYPE BOX), with TO_REMOVE 0: vtk codes boxes
    as torchvision and mmdetection's ATSS do, without the Detectron-era +1 pixel."""
    import math

    widths = anchors[:, 2] - anchors[:, 0] + to_remove
    heights = anchors[:, 3] - anchors[:, 1] + to_remove
    ctr_x, ctr_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    wx, wy, ww, wh = (10.0, 10.0, 5.0, 5.0)
    dx, dy = preds[:, 0] / wx, preds[:, 1] / wy
    dw = torch.clamp(preds[:, 2] / ww, max=math.log(1000.0 / 16))
    dh = torch.clamp(preds[:, 3] / wh, max=math.log(1000.0 / 16))
    px, py = dx * widths + ctr_x, dy * heights + ctr_y
    pw, ph = torch.exp(dw) * widths, torch.exp(dh) * heights
    return torch.stack([px - 0.5 * (pw - to_remove), py - 0.5 * (ph - to_remove),
                        px + 0.5 * (pw - to_remove), py + 0.5 * (ph - to_remove)], 1)  # fmt: skip


def _their_giou_loss(pred_boxes, target, weight):
    """GIoULoss of atss_core's loss.py, on decoded boxes."""
    px1, py1, px2, py2 = pred_boxes.unbind(1)
    px2, py2 = torch.max(px1, px2), torch.max(py1, py2)
    gx1, gy1, gx2, gy2 = target.unbind(1)
    pred_area = (px2 - px1) * (py2 - py1)
    gt_area = (gx2 - gx1) * (gy2 - gy1)
    x1, y1 = torch.max(px1, gx1), torch.max(py1, gy1)
    x2, y2 = torch.min(px2, gx2), torch.min(py2, gy2)
    inter = torch.zeros_like(px1)
    mask = (y2 > y1) & (x2 > x1)
    inter[mask] = (x2[mask] - x1[mask]) * (y2[mask] - y1[mask])
    enclosing = (torch.max(px2, gx2) - torch.min(px1, gx1)) * (
        torch.max(py2, gy2) - torch.min(py1, gy1)
    ) + 1e-7
    union = pred_area + gt_area - inter + 1e-7
    gious = inter / union - (enclosing - union) / enclosing
    return ((1 - gious) * weight).sum()


def _their_focal(logits, labels, gamma=2.0, alpha=0.25):
    """SigmoidFocalLoss (atss_core/layers/sigmoid_focal_loss.py, CPU path), summed; labels are
    1..C for a class, 0 background."""
    num_classes = logits.shape[1]
    classes = torch.arange(1, num_classes + 1, dtype=labels.dtype).unsqueeze(0)
    t = labels.unsqueeze(1)
    p = torch.sigmoid(logits)
    term1 = (1 - p) ** gamma * torch.log(p)
    term2 = p**gamma * torch.log(1 - p)
    return (-(t == classes).float() * term1 * alpha
            - ((t != classes) * (t >= 0)).float() * term2 * (1 - alpha)).sum()  # fmt: skip


def _their_centerness(reg_targets, anchors):
    gts = reg_targets
    cx, cy = (anchors[:, 2] + anchors[:, 0]) / 2, (anchors[:, 3] + anchors[:, 1]) / 2
    l_, t_ = cx - gts[:, 0], cy - gts[:, 1]
    r_, b_ = gts[:, 2] - cx, gts[:, 3] - cy
    lr, tb = torch.stack([l_, r_], 1), torch.stack([t_, b_], 1)
    return torch.sqrt((lr.min(1)[0] / lr.max(1)[0]) * (tb.min(1)[0] / tb.max(1)[0]))


def test_the_losses_are_the_authors() -> None:
    import torch.nn.functional as F
    from torchvision.models.detection._utils import BoxCoder

    from vtk.models.atss import BOX_WEIGHTS, atss_losses

    g = torch.Generator().manual_seed(0)
    n_anchors, k = 40, 3
    anchors = _grid(8, 24, 8)[:n_anchors].float()
    boxes = torch.tensor([[4.0, 2.0, 30.0, 28.0], [20.0, 10.0, 60.0, 44.0]])
    matched = torch.full((n_anchors,), -1)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    for j, b in enumerate(boxes):  # positives: anchors whose centre is inside the object
        inside = (
            (centres[:, 0] > b[0])
            & (centres[:, 0] < b[2])
            & (centres[:, 1] > b[1])
            & (centres[:, 1] < b[3])
        )
        matched[inside & (matched < 0)] = j
    outputs = {
        "cls_logits": torch.randn(1, n_anchors, k, generator=g),
        "bbox_regression": torch.randn(1, n_anchors, 4, generator=g) * 0.5,
        "bbox_ctrness": torch.randn(1, n_anchors, 1, generator=g),
    }
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 2])}]
    ours = atss_losses(outputs, [anchors], targets, [matched], BoxCoder(BOX_WEIGHTS))

    pos = matched >= 0
    labels = torch.zeros(n_anchors, dtype=torch.int64)
    labels[pos] = targets[0]["labels"][matched[pos]] + 1
    num_pos = float(pos.sum())
    reg_targets = boxes[matched[pos]]
    ctr_targets = _their_centerness(reg_targets, anchors[pos])
    decoded = _their_decode(outputs["bbox_regression"][0][pos], anchors[pos])
    theirs = {
        "classification": _their_focal(outputs["cls_logits"][0], labels) / num_pos,
        "bbox_regression": 2.0
        * _their_giou_loss(decoded, reg_targets, ctr_targets)
        / float(ctr_targets.sum()),
        "bbox_ctrness": F.binary_cross_entropy_with_logits(
            outputs["bbox_ctrness"][0][pos][:, 0], ctr_targets, reduction="sum"
        )
        / num_pos,
    }
    for key, value in theirs.items():
        assert float(ours[key]) == pytest.approx(float(value), rel=1e-4), key


def test_inference_thresholds_the_classification_before_the_centerness() -> None:
    model = ATSS(ResNet("resnet18", out_indices=(1, 2, 3)), num_classes=2, min_size=64,
                 max_size=64).eval()  # fmt: skip
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    cls = torch.tensor([[0.06, 0.0], [0.04, 0.0], [0.0, 0.9]])  # the second: under 0.05
    ctr = torch.tensor([0.5, 1.0, 0.81])
    out = model._detect(cls, torch.zeros(3, 4), ctr, anchors, (64, 64))
    # torchvision's FCOS rule, sqrt(cls x ctr) > 0.05, would keep the second (0.2) too
    assert out["labels"].tolist() == [1, 0]
    assert out["scores"].tolist() == pytest.approx([0.9**1.5, (0.06 * 0.5) ** 0.5])
    assert torch.equal(out["boxes"], anchors[[2, 0]])  # zero deltas decode to the anchors


def test_each_level_scales_its_deltas() -> None:
    from vtk.models.atss import ATSSHead

    head = ATSSHead(32, 1, 3, num_levels=2, num_convs=1)
    features = [torch.randn(1, 32, 4, 4), torch.randn(1, 32, 2, 2)]
    base = head(features)["bbox_regression"]
    with torch.no_grad():
        head.scales[1].scale.fill_(2.0)
    scaled = head(features)["bbox_regression"]
    assert torch.allclose(scaled[:, :16], base[:, :16]) and torch.allclose(
        scaled[:, 16:], 2 * base[:, 16:]
    )
