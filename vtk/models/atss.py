"""ATSS (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via
Adaptive Training Sample Selection", CVPR 2020) on vtk's one-stage detector base.

The paper's finding is that the matching, not the anchors, separates RetinaNet from FCOS; ATSS
is its matching (Algorithm 1): for each object, the ``topk`` anchors of every level whose
centres are nearest the object's centre are its candidates; their IoUs with the object give a
threshold, mean + standard deviation; a candidate is positive when its IoU reaches the
threshold and its centre lies inside the object, and an anchor claimed by several objects goes
to the one it overlaps most. One square anchor per place of ``anchor_scale`` x the level's
stride (8, §4.1), FCOS's head and losses (focal loss, GIoU, centre-ness; torchvision's
``FCOSHead``) and post-processing.

This file is the whole detector: a subclass of :class:`~vtk.models.detector.OneStageDetector`
and of torchvision's FCOS with its anchors, head and matching; ``vtk/models/__init__.py`` imports
it (which is all ``vtk list`` needs).

    >>> model = ATSS(ResNet("resnet50", out_indices=(1, 2, 3)), num_classes=80)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.models.detection as tvd
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import box_iou

from vtk.errors import ConfigError
from vtk.models.backbones.base import Backbone
from vtk.models.detector import NeckFactory, OneStageDetector, _fp32
from vtk.models.necks.fpn import FPN
from vtk.spec import IMAGENET_MEAN, IMAGENET_STD


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


class ATSS(OneStageDetector, tvd.FCOS):
    """ATSS with a vtk backbone and neck: FCOS's head and losses, ATSS's matching (see the
    module docs).

    Args: as :class:`~vtk.models.detector.OneStageDetector`, with ``topk`` (9) candidates per
    level and ``anchor_scale`` (8: an anchor is 8 strides wide, §4.1), ``num_convs`` (4) per head
    tower, and FCOS's post-processing defaults (score 0.05 here, NMS 0.6, 100 detections).
    No pretrained ATSS weights are offered; ``weights`` takes a saved state_dict.
    """

    torchvision_name = "atss"  # torchvision has none: weights "coco" is refused

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        neck: NeckFactory = FPN,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        topk: int = 9,
        anchor_scale: float = 8.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        num_convs: int = 4,
        weights: str | None = None,
    ) -> None:
        if weights == "coco":
            raise ConfigError(
                "torchvision has no ATSS weights: give the path of a saved ATSS state_dict, or "
                "pretrained backbone weights only (the backbone's weights argument)."
            )
        self.topk, self.anchor_scale, self.num_convs = topk, anchor_scale, num_convs
        super().__init__(
            backbone, num_classes, neck, min_size, max_size, image_mean, image_std,
            score_thresh, nms_thresh, detections_per_img, topk_candidates, weights, None,
        )  # fmt: skip

    def build_anchors(self, features: nn.Module) -> AnchorGenerator:
        sizes = tuple((int(self.anchor_scale * s),) for s in features.strides)
        return AnchorGenerator(sizes, ((1.0,),) * len(sizes))

    def build_head(self, features: nn.Module, anchors: nn.Module, num_classes: int) -> nn.Module:
        per_place = anchors.num_anchors_per_location()[0]
        return FCOSHead(features.out_channels, per_place, num_classes, self.num_convs)

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        num_anchors_per_level: list[int],
    ) -> dict[str, Tensor]:
        """ATSS's matching, then FCOSHead's losses (in fp32, as every vtk detector's)."""
        with torch.autocast(anchors[0].device.type, enabled=False):
            targets, head_outputs, anchors = _fp32(targets), _fp32(head_outputs), _fp32(anchors)
            matched = [
                atss_match(a, t["boxes"], num_anchors_per_level, self.topk)
                for a, t in zip(anchors, targets)
            ]
            return self.head.compute_loss(targets, head_outputs, anchors, matched)
