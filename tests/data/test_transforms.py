"""SSD's sampling transforms, checked by hand: the zoom out moves boxes with the image, the
min-IoU crop keeps its promise and the objects whose centre it holds."""

from __future__ import annotations

import numpy as np
import pytest

from vtk.data.transforms import MinIoURandomCrop, ZoomOut, _iou, detection_train


def test_zoom_out_places_the_image_and_its_boxes_on_the_canvas() -> None:
    image = np.full((100, 150, 3), 7, np.uint8)
    t = ZoomOut(fill=(1, 2, 3))
    out = t.apply(image, canvas=(200, 300), top=10, left=20)
    assert out.shape == (200, 300, 3)
    assert (out[10:110, 20:170] == 7).all() and (out[0, 0] == [1, 2, 3]).all()
    box = np.array([[15 / 150, 20 / 100, 75 / 150, 60 / 100, 4.0]])  # normalised, + a label
    moved = t.apply_to_bboxes(box, canvas=(200, 300), top=10, left=20, shape=(100, 150))
    np.testing.assert_allclose(moved[0, :4] * [300, 200, 300, 200], [35, 30, 95, 70])
    assert moved[0, 4] == 4.0  # extra columns (labels) travel with the box


@pytest.mark.parametrize("min_iou", [0.1, 0.5, 0.9])
def test_min_iou_crop_keeps_its_promise(min_iou: float) -> None:
    class Forced(MinIoURandomCrop):
        MODES = (min_iou,)

    t = Forced()
    t.set_random_seed(0)
    boxes = np.array([[10, 20, 90, 80], [40, 30, 110, 100]], np.float64)
    met = 0
    for _ in range(20):
        params = t.get_params_dependent_on_data(
            {"shape": (120, 160)}, {"bboxes": boxes / [160, 120, 160, 120]}
        )
        patch = np.array(params["crop_coords"], np.float64)
        if tuple(patch) == (0, 0, 160, 120):  # no patch met it in 5,000 tries: the whole image
            continue
        met += 1
        assert _iou(boxes, patch).min() >= min_iou - 1e-9
        w, h = patch[2] - patch[0], patch[3] - patch[1]
        assert 0.5 - 0.02 <= (w / 160) / (h / 120) <= 2 + 0.02  # up to the integer sides
    if min_iou < 0.9:  # IoU 0.9 with both objects at once is rarely met: the fallback is fine
        assert met > 0


def test_min_iou_crop_keeps_only_objects_whose_centre_it_holds() -> None:
    t = MinIoURandomCrop()
    boxes = np.array([[0.0, 0.0, 0.5, 0.5, 0.0], [0.4, 0.4, 0.9, 0.9, 1.0]])  # centres 0.25, 0.65
    kept = t.apply_to_bboxes(boxes, crop_coords=(40, 40, 100, 100), shape=(100, 100))
    assert kept[:, 4].tolist() == [1.0]  # the first box's centre (25, 25) is outside
    np.testing.assert_allclose(kept[0, :4], [0.0, 0.0, 50 / 60, 50 / 60], atol=1e-6)


def test_ssd_pipeline_gives_valid_boxes() -> None:
    t = detection_train(zoom_out_crop=True, photometric=True)
    t.set_random_seed(0)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes, labels = np.array([[10, 20, 60, 80], [100, 30, 150, 110]], np.float32), [0, 1]
    sizes = set()
    for _ in range(100):
        out = t(image=image, bboxes=boxes, labels=labels)
        b = np.asarray(out["bboxes"]).reshape(-1, 4)
        h, w = out["image"].shape[1:]
        assert len(b) == len(out["labels"]) >= 1
        assert (b[:, 2:] > b[:, :2]).all() and (b >= 0).all() and (b[:, [2, 3]] <= [w, h]).all()
        sizes.add((h, w))
    assert len(sizes) > 20  # zoomed out and cropped in many ways
