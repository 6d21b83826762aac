"""Dense prediction of one image at its own size, for any segmentation network.

``network(x)`` takes a normalised ``(B, 3, H, W)`` batch and returns ``(B, C, H, W)`` logits at
its input's size (a :class:`~vtk.models.Segmenter`'s ``["out"]``).

* :func:`whole`: the image padded at the bottom-right to a multiple of ``size_divisor`` (the
  networks' output stride, so features align as in training), the logits cut back.
* :func:`slide`: overlapping ``window`` crops ``stride`` apart (the last ones flush with the
  border, as mmsegmentation's ``slide`` mode), each run as :func:`whole`, ``batch`` windows
  at a time; the logits of overlapping windows are averaged. Memory holds one batch of windows
  and the image's logits, whatever the image's size. A window covering the image is
  :func:`whole`.
* :func:`augmented`: test-time augmentation, the logits of rescaled (and flipped) copies
  resized back to the image's size and averaged (DeepLabv3 §4.3's multi-scale + flip).

    >>> logits = slide(lambda x: model(x)["out"], image, window=(769, 769), stride=(513, 513))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Network = Callable[[Tensor], Tensor]


def whole(network: Network, images: Tensor, size_divisor: int = 32) -> Tensor:
    """Logits of ``(B, 3, H, W)`` images at their size; padding with 0 (the mean colour)."""
    h, w = images.shape[-2:]
    ph, pw = -h % size_divisor, -w % size_divisor
    if ph or pw:
        images = F.pad(images, (0, pw, 0, ph))
    return network(images)[..., :h, :w]


def _starts(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    count = (size - window + stride - 1) // stride + 1
    return sorted({min(i * stride, size - window) for i in range(count)})


def slide(
    network: Network,
    image: Tensor,
    window: int | Sequence[int],
    stride: int | Sequence[int],
    batch: int = 4,
    size_divisor: int = 32,
) -> Tensor:
    """Logits ``(1, C, H, W)`` of one ``(1, 3, H, W)`` image from overlapping windows."""
    wh, ww = (window, window) if isinstance(window, int) else tuple(window)
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    h, w = image.shape[-2:]
    boxes = [
        (y, x, min(y + wh, h), min(x + ww, w))
        for y in _starts(h, wh, sh)
        for x in _starts(w, ww, sw)
    ]
    logits: Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=image.device)
    for i in range(0, len(boxes), batch):
        group = boxes[i : i + batch]
        crops = torch.cat([image[..., y1:y2, x1:x2] for y1, x1, y2, x2 in group])
        out = whole(network, crops, size_divisor)
        if logits is None:
            logits = torch.zeros(1, out.shape[1], h, w, device=image.device, dtype=torch.float32)
        for (y1, x1, y2, x2), o in zip(group, out):
            logits[0, :, y1:y2, x1:x2] += o.float()
            count[..., y1:y2, x1:x2] += 1
    assert logits is not None
    return logits / count


def augmented(
    infer: Callable[[Tensor], Tensor],
    image: Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> Tensor:
    """Mean logits ``(1, C, H, W)`` of ``infer`` over rescaled and (with ``flip``) mirrored
    copies of one image, each resized back (bilinear) to the image's size."""
    h, w = image.shape[-2:]
    total: Tensor | None = None
    n = 0
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        scaled = (
            image
            if size == (h, w)
            else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        )
        views = [(scaled, False), (scaled.flip(-1), True)] if flip else [(scaled, False)]
        for view, flipped in views:
            out = infer(view).float()
            if flipped:
                out = out.flip(-1)
            if out.shape[-2:] != (h, w):
                out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            total = out if total is None else total + out
            n += 1
    assert total is not None
    return total / n


def sliced_detections(
    detector: Callable[[list[Tensor]], list[dict[str, Tensor]]],
    image: Tensor,
    size: int,
    overlap: float = 0.2,
    whole_image: bool = True,
    iou: float = 0.5,
    batch: int = 4,
    max_detections: int = 100,
    merge: str = "nms",
) -> dict[str, Tensor]:
    """Sliced detection of one large image (SAHI, Akyon et al. 2022): ``size`` x ``size`` tiles
    overlapping by ``overlap`` of their side (the last ones flush with the border), each run
    through ``detector`` (a list of ``(3, h, w)`` images in, torchvision's detections out) as an
    image of its own, ``batch`` tiles at a time, plus the whole image when ``whole_image`` (for
    the objects larger than a tile); the boxes are moved to the image's pixels and merged, the
    ``max_detections`` best kept: ``merge="nms"``, class-aware NMS at ``iou`` (torchvision's
    ``batched_nms``); ``"nmm"``, SAHI's default, greedy non-maximum *merging* by intersection
    over the smaller box at ``iou`` (:func:`greedy_nmm`).
    """
    from torchvision.ops import batched_nms

    h, w = image.shape[-2:]
    stride = max(1, round(size * (1.0 - overlap)))
    tiles = [(y, x) for y in _starts(h, size, stride) for x in _starts(w, size, stride)]
    found: list[dict[str, Tensor]] = []
    for k in range(0, len(tiles), batch):
        part = tiles[k : k + batch]
        out = detector([image[:, y : y + size, x : x + size] for y, x in part])
        for (y, x), d in zip(part, out):
            shift = d["boxes"].new_tensor([x, y, x, y])
            found.append({**d, "boxes": d["boxes"] + shift})
    if whole_image and len(tiles) > 1:
        found.extend(detector([image]))
    boxes = torch.cat([d["boxes"] for d in found])
    scores = torch.cat([d["scores"] for d in found])
    labels = torch.cat([d["labels"] for d in found])
    if merge == "nmm":
        merged = greedy_nmm(boxes.float(), scores.float(), labels, iou)
        top = merged["scores"].argsort(descending=True)[:max_detections]
        return {k: v[top] for k, v in merged.items()}
    keep = batched_nms(boxes.float(), scores.float(), labels, iou)[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def _ios(box: Tensor, others: Tensor) -> Tensor:
    """Intersection over the smaller box's area, of ``box`` (4,) with each of ``others``."""
    x1 = torch.maximum(others[:, 0], box[0])
    y1 = torch.maximum(others[:, 1], box[1])
    x2 = torch.minimum(others[:, 2], box[2])
    y2 = torch.minimum(others[:, 3], box[3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / torch.minimum(areas, area).clamp(min=1e-12)


def greedy_nmm(
    boxes: Tensor, scores: Tensor, labels: Tensor, threshold: float = 0.5
) -> dict[str, Tensor]:
    """SAHI's default merge (``GreedyNMMPostprocess`` with ``batched_greedy_nmm``, match metric
    IOS, class-aware): per class, the best remaining box keeps the boxes whose intersection over
    the smaller of the two reaches ``threshold``; each of those, best first, is merged into it
    when it still matches the merged box (above ``threshold``): the union of the two boxes, the
    higher score."""
    out_boxes, out_scores, out_labels = [], [], []
    for label in labels.unique():
        idx = (labels == label).nonzero().flatten()
        b, s = boxes[idx], scores[idx]
        order = s.argsort()
        while len(order):
            keep, order = order[-1], order[:-1]
            if len(order):
                matched = _ios(b[keep], b[order]) >= threshold
                to_merge = order[matched].flip(0)  # best first
                rest = order[~matched]
                order = rest[s[rest].argsort()]
            else:
                to_merge = order
            box, score = b[keep].clone(), s[keep].clone()
            for j in to_merge:
                if _ios(box, b[j][None])[0] > threshold:  # SAHI's has_match: strictly above
                    box = torch.cat([torch.minimum(box[:2], b[j][:2]),
                                     torch.maximum(box[2:], b[j][2:])])  # fmt: skip
                    score = torch.maximum(score, s[j])
            out_boxes.append(box)
            out_scores.append(score)
            out_labels.append(label)
    if not out_boxes:
        return {"boxes": boxes[:0], "scores": scores[:0], "labels": labels[:0]}
    return {"boxes": torch.stack(out_boxes), "scores": torch.stack(out_scores),
            "labels": torch.stack(out_labels)}  # fmt: skip
