"""Metrics that torchmetrics and pycocotools do not have.

:class:`DetectionConfusionMatrix`: which class each ground-truth object was detected as, across
classes, with a background row (false positives) and column (missed objects). COCOeval matches
detections to objects of their own category only, so it cannot say "this dog was detected as a
cat"; this matrix is what ultralytics' and mmdetection's confusion-matrix tools compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchvision.ops import box_area, box_iou


class DetectionConfusionMatrix(Metric):
    """``(K + 1) x (K + 1)`` counts: rows the true class, columns the predicted one, index ``K``
    the background.

    Per image, detections scoring at least ``score_thresh`` are matched to the (non-crowd)
    objects one to one, whatever their classes, greedily by IoU (highest first) among the pairs
    with IoU >= ``iou_thresh``. A matched pair counts at ``[true, predicted]``; an unmatched
    object at ``[true, K]`` (missed); an unmatched detection at ``[K, predicted]`` (a false
    positive) unless it lies on a crowd region (intersection over its own area >=
    ``iou_thresh``, COCO's rule), where it counts nowhere. States are summed across processes.
    """

    full_state_update = False

    def __init__(
        self, num_classes: int, score_thresh: float = 0.25, iou_thresh: float = 0.5
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.score_thresh = score_thresh
        self.iou_thresh = iou_thresh
        n = num_classes + 1
        self.add_state("matrix", torch.zeros(n, n, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, detections: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]]
    ) -> None:
        background = self.num_classes
        for det, target in zip(detections, targets):
            keep = det["scores"] >= self.score_thresh
            boxes, labels = det["boxes"][keep].float(), det["labels"][keep].long()
            crowd = target.get("iscrowd", torch.zeros(len(target["labels"]))).bool()
            gt_boxes = target["boxes"][~crowd].float().to(boxes.device)
            gt_labels = target["labels"][~crowd].long().to(boxes.device)
            det_matched = torch.zeros(len(boxes), dtype=torch.bool)
            gt_matched = torch.zeros(len(gt_boxes), dtype=torch.bool)
            if len(boxes) and len(gt_boxes):
                iou = box_iou(gt_boxes, boxes)
                pairs = (iou >= self.iou_thresh).nonzero()
                order = iou[pairs[:, 0], pairs[:, 1]].argsort(descending=True, stable=True)
                for g, d in pairs[order].tolist():
                    if not gt_matched[g] and not det_matched[d]:
                        gt_matched[g] = det_matched[d] = True
                        self.matrix[gt_labels[g], labels[d]] += 1
            for g in (~gt_matched).nonzero().flatten().tolist():
                self.matrix[gt_labels[g], background] += 1
            unmatched = (~det_matched).nonzero().flatten()
            if crowd.any() and len(unmatched):
                crowd_boxes = target["boxes"][crowd].float().to(boxes.device)
                on_crowd = (
                    _intersection_over_first(boxes[unmatched], crowd_boxes) >= self.iou_thresh
                )
                unmatched = unmatched[~on_crowd.any(1)]
            for d in unmatched.tolist():
                self.matrix[background, labels[d]] += 1

    def compute(self) -> Tensor:
        return self.matrix


def _intersection_over_first(a: Tensor, b: Tensor) -> Tensor:
    """``(len(a), len(b))``: the area of each intersection over the area of the ``a`` box."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    return inter / box_area(a)[:, None].clamp(min=1e-9)


def classification_scores(confusion: Tensor) -> dict[str, Tensor]:
    """Per-class scores of single-label classification from a ``(K, K)`` confusion matrix over a
    split (rows the true class, columns the predicted one):

    * ``precision`` per class: TP / (TP + FP), NaN for a class never predicted;
    * ``recall`` per class (the class's accuracy): TP / (TP + FN), NaN for a class absent from
      the labels;
    * ``acc_class``: the mean of the classes' recall (balanced accuracy).
    """
    c = confusion.double()
    tp = c.diagonal()
    labelled, predicted = c.sum(1), c.sum(0)
    nan = torch.tensor(float("nan"), dtype=c.dtype, device=c.device)
    recall = torch.where(labelled > 0, tp / labelled.clamp(min=1), nan)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), nan)
    return {"precision": precision, "recall": recall, "acc_class": recall.nanmean()}


def segmentation_scores(confusion: Tensor) -> dict[str, Tensor]:
    """The scores of semantic segmentation from one ``(K, K)`` confusion matrix over a split
    (rows the true class, columns the predicted one; ignored pixels not counted), as SegNet,
    ChainerCV's ``eval_semantic_segmentation`` and VOC's devkit compute them:

    * ``IoU`` per class: TP / (TP + FP + FN); NaN for a class in neither labels nor predictions;
    * ``acc`` per class (recall): TP / (TP + FN); NaN for a class absent from the labels;
    * ``mIoU`` and ``acc_class`` (class-average accuracy): their means over the non-NaN classes;
    * ``acc_global``: correct pixels / all scored pixels.

    A class predicted but absent from the labels counts in mIoU (IoU 0) but not in
    ``acc_class`` (torchmetrics' macro accuracy would count it as 0).
    """
    c = confusion.double()
    tp = c.diagonal()
    labelled, predicted = c.sum(1), c.sum(0)
    union = labelled + predicted - tp
    nan = torch.tensor(float("nan"), dtype=c.dtype, device=c.device)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    acc = torch.where(labelled > 0, tp / labelled.clamp(min=1), nan)
    total = c.sum()
    return {
        "mIoU": iou.nanmean(),
        "acc_global": tp.sum() / total if total > 0 else nan,
        "acc_class": acc.nanmean(),
        "IoU": iou,
        "acc": acc,
    }


class BinaryThresholdCounts(Metric):
    """True/false positives and negatives of a binary prediction at each of ``thresholds``
    (a foreground probability at or above the threshold is a positive), as ``(T, 4)`` counts
    ``tp, fp, tn, fn``, summed across processes. One pass per update: each probability is
    binned by the thresholds it reaches, and the counts at every threshold are suffix sums of
    the bins, so the counts are exact for the grid whatever its size."""

    full_state_update = False

    def __init__(self, thresholds: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("thresholds", torch.tensor(sorted(thresholds), dtype=torch.float64))
        t = len(thresholds)
        self.add_state("pos_bins", torch.zeros(t + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("neg_bins", torch.zeros(t + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """``probs`` the foreground probabilities and ``target`` 1 / 0 of the scored pixels."""
        bins = torch.bucketize(probs.double().flatten(), self.thresholds, right=True)
        positive = target.flatten().bool()
        n = len(self.thresholds) + 1
        self.pos_bins += torch.bincount(bins[positive], minlength=n)
        self.neg_bins += torch.bincount(bins[~positive], minlength=n)

    def compute(self) -> Tensor:
        # a probability in bin k reaches thresholds 0..k-1: at threshold j the positives are
        # the bins above j
        above_pos = self.pos_bins.flip(0).cumsum(0).flip(0)[1:]
        above_neg = self.neg_bins.flip(0).cumsum(0).flip(0)[1:]
        tp, fp = above_pos, above_neg
        fn, tn = self.pos_bins.sum() - tp, self.neg_bins.sum() - fp
        return torch.stack([tp, fp, tn, fn], dim=1)


def binary_scores(counts: Tensor) -> dict[str, Tensor]:
    """F1 (Dice), sensitivity (recall), specificity, precision and accuracy from ``(..., 4)``
    counts ``tp, fp, tn, fn`` (0 where a ratio has no denominator)."""
    tp, fp, tn, fn = counts.double().unbind(-1)

    def ratio(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(b > 0, a / b.clamp(min=1), torch.zeros_like(a))

    return {
        "F1": ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "acc": ratio(tp + tn, tp + fp + tn + fn),
    }
