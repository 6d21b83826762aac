"""vtk.models.inference: whole-image and sliding-window logits, test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vtk.models import inference


class Pointwise(nn.Module):
    """A 1x1 conv: each output pixel depends on its input pixel only, so any tiling of the
    image must give the same logits as the whole image. Records its batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 1)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return self.conv(x)


def test_whole_pads_to_the_divisor_and_cuts_back() -> None:
    shapes = []

    def network(x):
        shapes.append(tuple(x.shape[-2:]))
        return x[:, :2] * 2

    image = torch.randn(1, 3, 37, 50)
    out = inference.whole(network, image, size_divisor=32)
    assert shapes == [(64, 64)] and out.shape == (1, 2, 37, 50)
    torch.testing.assert_close(out, image[:, :2] * 2)


@pytest.mark.parametrize("window,stride", [(16, 8), ((20, 12), (15, 10)), (64, 64)])
def test_slide_equals_whole_for_a_pointwise_network(window, stride) -> None:
    net, image = Pointwise(), torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        torch.testing.assert_close(
            inference.slide(net, image, window, stride, batch=3),
            inference.whole(net, image),
        )


def test_slide_holds_one_window_batch_at_a_time_and_covers_the_image() -> None:
    net, image = Pointwise(), torch.randn(1, 3, 100, 70)
    with torch.no_grad():
        inference.slide(net, image, window=32, stride=20, batch=4)
    # rows start at 0, 20, 40, 60, 68; columns at 0, 20, 38: 15 windows, four at a time
    assert net.batches == [4, 4, 4, 3]


def test_a_window_covering_the_image_is_whole() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1)).eval()

    def network(x):
        return net(x).expand(-1, -1, *x.shape[-2:])  # image pooling: depends on the whole input

    image = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(
            inference.slide(network, image, 64, 32), inference.whole(network, image)
        )


def test_flip_tta_of_a_symmetric_image_is_symmetric_and_scales_resize_back() -> None:
    torch.manual_seed(0)
    net = nn.Conv2d(3, 4, 3, padding=1)  # not symmetric itself
    half = torch.randn(1, 3, 16, 12)
    image = torch.cat([half, half.flip(-1)], -1)  # mirror-symmetric
    with torch.no_grad():
        out = inference.augmented(net, image, flip=True)
        torch.testing.assert_close(out, out.flip(-1))
        plain = inference.augmented(net, image)
        torch.testing.assert_close(plain, net(image))
        scaled = inference.augmented(net, image, scales=(0.5, 1.0, 1.5))
    assert scaled.shape == (1, 4, 16, 24)


def _white_box_detector(max_side: int):
    """Finds the bounding box of the white pixels of each image, but only in images no larger
    than ``max_side`` (a detector that resizes a large image loses small objects)."""

    def detect(images):
        out = []
        for image in images:
            ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
            if len(ys) and max(image.shape[-2:]) <= max_side:
                box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]).float()
                out.append(
                    {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
                )
            else:
                out.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.int64)})  # fmt: skip
        return out

    return detect


def test_sliced_detection_finds_what_the_whole_image_loses() -> None:
    from vtk.models.inference import sliced_detections

    image = torch.zeros(3, 300, 520)
    image[:, 200:220, 400:430] = 1.0  # a small object near the bottom-right
    detector = _white_box_detector(max_side=256)
    assert len(detector([image])[0]["boxes"]) == 0  # the whole image: lost
    found = sliced_detections(detector, image, size=256, overlap=0.25)
    # seen whole by two overlapping tiles: one box after NMS, in the image's pixels
    assert found["boxes"].tolist() == [[400.0, 200.0, 430.0, 220.0]]
    assert found["labels"].tolist() == [1]
    # an image no larger than a tile is one tile, and the whole pass is not run twice
    calls = []
    small = torch.zeros(3, 100, 120)
    sliced_detections(lambda ims: calls.append(len(ims)) or detector(ims), small, size=256)
    assert calls == [1]


def _sahi_greedy_nmm(preds: torch.Tensor, threshold: float) -> list[list[float]]:
    """SAHI's GreedyNMMPostprocess (sahi/postprocess/combine.py: batched_greedy_nmm,
    greedy_nmm, has_match, merge_object_prediction_pair), IOS, class-aware, transcribed;
    ``preds`` rows are x1, y1, x2, y2, score, category."""

    def greedy_nmm(t):
        keep_to_merge = {}
        x1, y1, x2, y2, scores = t[:, 0], t[:, 1], t[:, 2], t[:, 3], t[:, 4]
        areas = (x2 - x1) * (y2 - y1)
        order = scores.argsort()
        while len(order) > 0:
            idx = order[-1]
            order = order[:-1]
            if len(order) == 0:
                keep_to_merge[idx.tolist()] = []
                break
            xx1 = torch.max(torch.index_select(x1, 0, order), x1[idx])
            yy1 = torch.max(torch.index_select(y1, 0, order), y1[idx])
            xx2 = torch.min(torch.index_select(x2, 0, order), x2[idx])
            yy2 = torch.min(torch.index_select(y2, 0, order), y2[idx])
            inter = (xx2 - xx1).clamp(min=0.0) * (yy2 - yy1).clamp(min=0.0)
            rem_areas = torch.index_select(areas, 0, order)
            value = inter / torch.min(rem_areas, areas[idx])
            mask = value < threshold
            matched = order[(~mask).nonzero().flatten()].flip(dims=(0,))
            unmatched = order[mask.nonzero().flatten()]
            order = unmatched[scores[unmatched].argsort()]
            keep_to_merge[idx.tolist()] = matched.tolist()
        return keep_to_merge

    def ios(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
        return w * h / smaller

    keep_to_merge = {}
    for category in torch.unique(preds[:, 5]):
        indices = torch.where(preds[:, 5] == category)[0].tolist()
        for keep, merge in greedy_nmm(preds[indices]).items():
            keep_to_merge[indices[keep]] = [indices[m] for m in merge]
    rows = preds.tolist()
    out = []
    for keep, merge in keep_to_merge.items():
        for m in merge:
            if ios(rows[keep], rows[m]) > threshold:
                a, b = rows[keep], rows[m]
                rows[keep] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]),
                              max(a[4], b[4]), a[5] if a[4] >= b[4] else b[5]]  # fmt: skip
        out.append(rows[keep])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_nmm_is_sahis(seed) -> None:
    from vtk.models.inference import greedy_nmm

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(40, 2, generator=g, dtype=torch.float64) * 100
    wh = torch.rand(40, 2, generator=g, dtype=torch.float64) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(40, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,), generator=g)
    ours = greedy_nmm(boxes, scores, labels, 0.5)
    got = sorted(
        [*b.tolist(), float(s), float(k)]
        for b, s, k in zip(ours["boxes"], ours["scores"], ours["labels"])
    )
    preds = torch.cat([boxes, scores[:, None], labels[:, None].double()], 1)
    want = sorted(_sahi_greedy_nmm(preds, 0.5))
    assert len(got) == len(want) < 40
    assert np.allclose(np.array(got), np.array(want))
