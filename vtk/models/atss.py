"""ATSS (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via
Adaptive Training Sample Selection", CVPR 2020) on vtk's one-stage detector base.

The paper's finding is that the matching, not the anchors, separates RetinaNet from FCOS; ATSS
is its matching (Algorithm 1): for each object, the ``topk`` anchors of every level whose
centres are nearest the object's centre are its candidates; their IoUs with the object give a
threshold, mean + standard deviation; a candidate is positive when its IoU reaches the
threshold and its centre lies inside the object, and an anchor claimed by several objects goes
to the one it overlaps most. One square anchor per place of ``anchor_scale`` x the level's
stride (8, §4.1).

The head, losses and post-processing are the authors' (sfzhang15/ATSS, ``atss_core/modeling/
rpn/atss``: ``atss.py``, ``loss.py``, ``inference.py``, the released ``REGRESSION_TYPE: BOX``):
two towers of ``num_convs`` 3x3 conv + GroupNorm + ReLU; the box branch predicts deltas from the
anchor (weights 10, 10, 5, 5), multiplied by a learnable scale per level, and a centre-ness;
the losses are the sigmoid focal loss over the positives' count, GIoU (weight 2.0) with each
positive weighted by its centre-ness target and normalised by their sum, and centre-ness BCE
over the positives' count; at inference the classification score must reach ``score_thresh``
(0.05) *before* it is multiplied by the centre-ness, the 1000 best over all levels go to
class-aware NMS, and a detection's score is ``sqrt(classification x centre-ness)``. Boxes are
coded as torchvision's (and mmdetection's ATSS) ``BoxCoder`` codes them, without the +1 pixel
of the authors' Detectron-era coder.

This file is the whole detector: a subclass of :class:`~vtk.models.detector.OneStageDetector`
and of torchvision's FCOS with its anchors, head and matching; ``vtk/models/__init__.py`` exports
it and one line of ``vtk/registry.py`` registers it (which is all ``vtk list`` needs).

    >>> model = ATSS(ResNet("resnet50", out_indices=(1, 2, 3)), num_classes=80)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision.models.detection as tvd
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import (
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from vtk.errors import ConfigError
from vtk.models.backbones.base import Backbone
from vtk.models.detector import (
    AnchorFactory,
    HeadFactory,
    LevelAnchors,
    NeckFactory,
    OneStageDetector,
    _fp32,
)
from vtk.models.necks.fpn import FPN


def atss_match(
    anchors: Tensor, boxes: Tensor, anchors_per_level: Sequence[int], topk: int = 9
) -> Tensor:
    """ATSS's assignment (Algorithm 1): for each of ``anchors`` (A, 4), the index of the object
    of ``boxes`` (M, 4) it is a positive for, or -1 (x1y1x2y2 boxes; anchors level by level)."""
    matched = torch.full((len(anchors),), -1, dtype=torch.int64, device=anchors.device)
    if len(boxes) == 0:
        return matched
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distances = torch.cdist(centres, box_centres)  # (A, M)
    candidates = []
    start = 0
    for n in anchors_per_level:  # the k nearest of each level
        k = min(topk, n)
        candidates.append(
            distances[start : start + n].topk(k, dim=0, largest=False).indices + start
        )
        start += n
    candidates = torch.cat(candidates)  # (k x levels, M)
    ious = box_iou(anchors, boxes)  # (A, M)
    candidate_ious = ious.gather(0, candidates)
    threshold = candidate_ious.mean(0) + candidate_ious.std(0, unbiased=True).nan_to_num(0)
    positive = candidate_ious >= threshold[None]
    c = centres[candidates]  # (k x levels, M, 2): is the candidate's centre inside its object?
    inside = (
        (c[..., 0] > boxes[None, :, 0]) & (c[..., 0] < boxes[None, :, 2])
        & (c[..., 1] > boxes[None, :, 1]) & (c[..., 1] < boxes[None, :, 3])
    )  # fmt: skip
    positive &= inside
    # an anchor positive for several objects goes to the one it overlaps most
    claimed = torch.full_like(ious, -1.0)
    objects = torch.arange(len(boxes), device=anchors.device).expand_as(candidates)
    claimed[candidates[positive], objects[positive]] = ious[candidates[positive], objects[positive]]
    best, index = claimed.max(1)
    matched[best >= 0] = index[best >= 0]
    return matched


#: the authors' box coding (``BoxCoder`` in atss_core: wx, wy, ww, wh) and loss weight
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
REG_LOSS_WEIGHT = 2.0


class Scale(nn.Module):
    """A learnable factor (FCOS's and ATSS's per-level ``Scale``), initialised to 1."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(32, channels),
                   nn.ReLU()]  # fmt: skip
    return nn.Sequential(*layers)


class ATSSHead(nn.Module):
    """The authors' ATSS head (``ATSSHead`` in atss_core): a classification tower and a box
    tower; from the box tower the deltas (x a learnable scale per level) and the centre-ness.

    Args:
        in_channels: the levels' width (the neck's ``out_channels``).
        num_anchors: anchors per place (1).
        num_classes: classes to detect.
        num_levels: feature levels (one scale each).
        num_convs: convs per tower (4).
        prior_probability: the classification bias's initial probability (0.01, RetinaNet's).
    """

    def __init__(
        self, in_channels: int, num_anchors: int, num_classes: int, num_levels: int,
        num_convs: int = 4, prior_probability: float = 0.01,
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.cls_tower = _tower(in_channels, num_convs)
        self.bbox_tower = _tower(in_channels, num_convs)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, num_anchors, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        logits, deltas, centerness = [], [], []
        for level, x in enumerate(features):
            cls_feature, box_feature = self.cls_tower(x), self.bbox_tower(x)
            logits.append(_flatten(self.cls_logits(cls_feature), self.num_classes))
            deltas.append(_flatten(self.scales[level](self.bbox_pred(box_feature)), 4))
            centerness.append(_flatten(self.centerness(box_feature), 1))
        return {
            "cls_logits": torch.cat(logits, 1),
            "bbox_regression": torch.cat(deltas, 1),
            "bbox_ctrness": torch.cat(centerness, 1),
        }


def _flatten(x: Tensor, k: int) -> Tensor:
    """(N, A*K, H, W) -> (N, H*W*A, K), torchvision's order of a level's anchors."""
    n, _, h, w = x.shape
    return x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)


def centerness_targets(boxes: Tensor, anchors: Tensor) -> Tensor:
    """``compute_centerness_targets`` of the authors' loss: sqrt(min(l, r) / max(l, r) x
    min(t, b) / max(t, b)) of the anchor centre's distances to its object's sides."""
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    lr = torch.stack([cx - boxes[:, 0], boxes[:, 2] - cx], 1)
    tb = torch.stack([cy - boxes[:, 1], boxes[:, 3] - cy], 1)
    ratio = (lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)
    return torch.sqrt(ratio.clamp(min=0))


def _average_over_processes(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the processes of a DDP run (the authors' ``reduce_sum`` /
    ``num_gpus``), the value itself in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        total = torch.tensor(float(value), device=device)
        torch.distributed.all_reduce(total)
        return float(total) / torch.distributed.get_world_size()
    return float(value)


class ATSS(OneStageDetector, tvd.FCOS):
    """ATSS with a vtk backbone and neck: the authors' matching, head, losses and
    post-processing (see the module docs).

    Args: as :class:`~vtk.models.detector.OneStageDetector`, with ``topk`` (9) candidates per
    level and ``anchor_scale`` (8: an anchor is 8 strides wide, §4.1), ``num_convs`` (4) per head
    tower, and the authors' inference settings (a classification score of at least 0.05, the
    1000 best, NMS 0.6, 100 detections). No pretrained ATSS weights are offered; ``weights``
    takes a saved state_dict. A ``head`` given in place of :class:`ATSSHead` returns what it
    returns (``cls_logits``, ``bbox_regression``, ``bbox_ctrness``), as torchvision's
    ``FCOSHead`` does.
    """

    torchvision_name = "atss"  # torchvision has none: weights "coco" is refused

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        neck: NeckFactory = FPN,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        topk: int = 9,
        anchor_scale: float = 8.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        num_convs: int = 4,
        weights: str | None = None,
        head: HeadFactory | None = None,
        anchor_generator: AnchorFactory | None = None,
    ) -> None:
        if weights == "coco":
            raise ConfigError(
                "torchvision has no ATSS weights: give the path of a saved ATSS state_dict, or "
                "pretrained backbone weights only (the backbone's weights argument)."
            )
        self.topk, self.anchor_scale, self.num_convs = topk, anchor_scale, num_convs
        super().__init__(
            backbone, num_classes, neck, min_size, max_size, image_mean, image_std,
            score_thresh, nms_thresh, detections_per_img, topk_candidates, weights, None, head,
            anchor_generator,
        )  # fmt: skip
        self.box_coder = BoxCoder(BOX_WEIGHTS, bbox_xform_clip=math.log(1000.0 / 16))

    def default_anchors(self, strides: Sequence[int]) -> nn.Module:
        return LevelAnchors(strides, scale=self.anchor_scale)

    def default_head(self, in_channels: int, num_anchors: int, num_classes: int) -> nn.Module:
        return ATSSHead(in_channels, num_anchors, num_classes, self.num_levels, self.num_convs)

    def build_anchors(self, features: nn.Module) -> nn.Module:
        self.num_levels = len(features.strides)  # (the head has a learnable scale per level)
        return super().build_anchors(features)

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        num_anchors_per_level: list[int],
    ) -> dict[str, Tensor]:
        """ATSS's matching, then the authors' losses (``ATSSLossComputation``), in fp32."""
        with torch.autocast(anchors[0].device.type, enabled=False):
            targets, head_outputs, anchors = _fp32(targets), _fp32(head_outputs), _fp32(anchors)
            matched = [
                atss_match(a, t["boxes"], num_anchors_per_level, self.topk)
                for a, t in zip(anchors, targets)
            ]
            return atss_losses(head_outputs, anchors, targets, matched, self.box_coder)

    def postprocess_detections(
        self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:  # fmt: skip
        """The authors' ``ATSSPostProcessor``: classification scores of at least
        ``score_thresh`` (before the centre-ness), the ``topk_candidates`` best of
        ``classification x centre-ness`` over all levels, class-aware NMS, the
        ``detections_per_img`` best; a detection scores ``sqrt(classification x centre-ness)``."""
        with torch.autocast(anchors[0][0].device.type, enabled=False):
            head_outputs, anchors = _fp32(head_outputs), _fp32(anchors)
            out = []
            for i, image_shape in enumerate(image_shapes):
                logits = torch.cat([lv[i] for lv in head_outputs["cls_logits"]])
                deltas = torch.cat([lv[i] for lv in head_outputs["bbox_regression"]])
                ctr = torch.cat([lv[i] for lv in head_outputs["bbox_ctrness"]]).sigmoid()
                out.append(self._detect(logits.sigmoid(), deltas, ctr, torch.cat(anchors[i]),
                                        image_shape))  # fmt: skip
            return out

    def _detect(self, cls: Tensor, deltas: Tensor, ctr: Tensor, anchors: Tensor,
                image_shape: tuple[int, int]) -> dict[str, Tensor]:  # fmt: skip
        candidates = cls > self.score_thresh
        scores = (cls * ctr.reshape(-1, 1))[candidates]
        anchor_idx, labels = candidates.nonzero(as_tuple=True)
        k = min(self.topk_candidates, len(scores))
        scores, top = scores.topk(k)
        anchor_idx, labels = anchor_idx[top], labels[top]
        boxes = self.box_coder.decode_single(deltas[anchor_idx], anchors[anchor_idx])
        boxes = clip_boxes_to_image(boxes, image_shape)
        keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
        return {"boxes": boxes[keep], "scores": scores[keep].sqrt(), "labels": labels[keep]}


def atss_losses(
    head_outputs: dict[str, Tensor], anchors: list[Tensor], targets: list[dict[str, Tensor]],
    matched: list[Tensor], box_coder: BoxCoder,
) -> dict[str, Tensor]:  # fmt: skip
    """The authors' ``ATSSLossComputation`` for matched anchors (``matched[i][a]``: the object
    index, or -1): focal loss / positives, ``REG_LOSS_WEIGHT`` x GIoU weighted by the centre-ness
    targets / their sum, centre-ness BCE / positives (both counts averaged over processes)."""
    logits = head_outputs["cls_logits"]  # (N, A, K)
    gt_classes = torch.zeros_like(logits)
    pos_deltas, pos_anchors, pos_boxes, pos_ctr = [], [], [], []
    for i, (m, t) in enumerate(zip(matched, targets)):
        positive = m >= 0
        gt_classes[i, positive, t["labels"][m[positive]]] = 1.0
        pos_deltas.append(head_outputs["bbox_regression"][i][positive])
        pos_anchors.append(anchors[i][positive])
        pos_boxes.append(t["boxes"][m[positive]])
        pos_ctr.append(head_outputs["bbox_ctrness"][i][positive][:, 0])
    deltas, anchors_pos = torch.cat(pos_deltas), torch.cat(pos_anchors)
    boxes, ctr_logits = torch.cat(pos_boxes), torch.cat(pos_ctr)
    device = logits.device
    num_pos = max(_average_over_processes(len(boxes), device), 1.0)
    cls_loss = sigmoid_focal_loss(logits, gt_classes, reduction="sum") / num_pos
    if len(boxes) == 0:
        zero = deltas.sum() * 0 + ctr_logits.sum() * 0
        return {"classification": cls_loss, "bbox_regression": zero, "bbox_ctrness": zero}
    ctr_targets = centerness_targets(boxes, anchors_pos)
    ctr_sum = max(_average_over_processes(float(ctr_targets.sum()), device), 1e-6)
    decoded = box_coder.decode_single(deltas, anchors_pos)
    giou = generalized_box_iou_loss(decoded, boxes, reduction="none")
    reg_loss = REG_LOSS_WEIGHT * (giou * ctr_targets).sum() / ctr_sum
    ctr_loss = (
        F.binary_cross_entropy_with_logits(ctr_logits, ctr_targets, reduction="sum") / num_pos
    )
    return {"classification": cls_loss, "bbox_regression": reg_loss, "bbox_ctrness": ctr_loss}
