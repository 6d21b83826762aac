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


@pytest.mark.parametrize("order", [True, "rfbnet"])
def test_ssd_pipeline_gives_valid_boxes(order) -> None:
    t = detection_train(zoom_out_crop=order, photometric=True)
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


def test_ssd_and_rfb_net_orders() -> None:
    """ssd.pytorch: distortion, zoom out (p 0.5), crop, flip; RFB Net's preproc: crop,
    distortion (contrast always first), zoom out (p 0.6), flip."""
    from vtk.data.transforms import PhotoMetricDistortion

    def steps(t) -> list[tuple[str, float]]:
        return [(type(op).__name__, op.p) for op in t.transforms][:4]

    assert steps(detection_train(zoom_out_crop="ssd", photometric=True)) == [
        ("PhotoMetricDistortion", 1.0), ("ZoomOut", 0.5), ("MinIoURandomCrop", 1.0),
        ("HorizontalFlip", 0.5),
    ]  # fmt: skip
    rfb = detection_train(zoom_out_crop="rfbnet", photometric=True)
    assert steps(rfb) == [
        ("MinIoURandomCrop", 1.0), ("PhotoMetricDistortion", 1.0), ("ZoomOut", 0.6),
        ("HorizontalFlip", 0.5),
    ]  # fmt: skip
    distort = next(op for op in rfb.transforms if isinstance(op, PhotoMetricDistortion))
    assert not distort.contrast_last
    assert (distort.brightness_delta, distort.hue_delta) == (32, 18)
    assert distort.contrast_range == distort.saturation_range == (0.5, 1.5)
    with pytest.raises(ValueError, match="zoom_out_crop"):
        detection_train(zoom_out_crop="yolo")


# -- mmsegmentation's photometric distortion and class-balanced crop ---------------------------
def _solid(rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (4, 4, 3)).copy()


def test_photometric_steps_by_hand() -> None:
    from vtk.data.transforms import photometric_distort

    none = dict(brightness=None, contrast_first=True, contrast=None, saturation=None, hue=None)
    img = _solid((100, 150, 250))
    assert (photometric_distort(img, **none) == img).all()
    # brightness adds, clipped at 255; contrast multiplies, truncated to uint8 as mmcv does
    out = photometric_distort(img, **{**none, "brightness": 10.7})
    assert out[0, 0].tolist() == [110, 160, 255]
    out = photometric_distort(img, **{**none, "contrast": 1.5})
    assert out[0, 0].tolist() == [150, 225, 255]
    # hue +60 (OpenCV's half degrees: 120 degrees) turns pure red into pure green
    assert photometric_distort(_solid((255, 0, 0)), **{**none, "hue": 60})[0, 0].tolist() == [
        0, 255, 0,
    ]  # fmt: skip
    # hue wraps: -60 from red (0) is 120 (240 degrees): blue
    assert photometric_distort(_solid((255, 0, 0)), **{**none, "hue": -60})[0, 0].tolist() == [
        0, 0, 255,
    ]  # fmt: skip
    # saturation x0.5 of pure red: S 255 -> 127, V stays 255: the other channels rise to ~128
    r, g, b = photometric_distort(_solid((255, 0, 0)), **{**none, "saturation": 0.5})[0, 0]
    assert r == 255 and abs(int(g) - 128) <= 1 and g == b
    # contrast last comes after brightness and the HSV steps: the order changes the result
    first = photometric_distort(img, **{**none, "brightness": 50, "contrast": 0.5})
    last = photometric_distort(
        img, **{**none, "brightness": 50, "contrast": 0.5, "contrast_first": False}
    )
    assert first[0, 0].tolist() == [75, 100, 127] == last[0, 0].tolist()  # commute here...
    sat = {**none, "saturation": 2.0, "contrast": 0.5}
    assert (
        photometric_distort(img, **sat).tolist()
        != photometric_distort(img, **{**sat, "contrast_first": False}).tolist()
    )  # ...but not around the saturation clip


def test_photometric_draws_follow_mmseg() -> None:
    from vtk.data.transforms import PhotoMetricDistortion

    t = PhotoMetricDistortion()
    t.set_random_seed(0)
    draws = [t.get_params() for _ in range(2000)]
    for key, bound in (("brightness", 32), ("saturation", None), ("hue", 18)):
        values = [d[key] for d in draws if d[key] is not None]
        assert 0.45 < len(values) / len(draws) < 0.55, key  # each step half of the time
        if key == "saturation":
            assert min(values) >= 0.5 and max(values) <= 1.5
        else:
            assert -bound <= min(values) < -0.9 * bound and 0.9 * bound < max(values) <= bound
    assert all(isinstance(d["hue"], int) for d in draws if d["hue"] is not None)
    assert 0.45 < np.mean([d["contrast_first"] for d in draws]) < 0.55  # mmseg's coin
    ssd = PhotoMetricDistortion(contrast_last=False)
    assert all(ssd.get_params()["contrast_first"] for _ in range(50))


def test_photometric_in_the_segmentation_pipeline_leaves_the_mask() -> None:
    from vtk.data.transforms import segmentation_train

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (40, 48), dtype=np.uint8)
    plain = segmentation_train(32, (1.0, 1.0), hflip=0.0)
    distorted = segmentation_train(32, (1.0, 1.0), hflip=0.0, photometric=True)
    for t in (plain, distorted):
        t.set_random_seed(3)
    a, b = plain(image=image, mask=mask), distorted(image=image, mask=mask)
    assert (a["mask"] == b["mask"]).all()  # the same crop, the mask untouched
    assert not np.allclose(a["image"], b["image"])


def _balanced_share(crop, mask: np.ndarray, ratio: float = 0.75, ignore: int = 255) -> float:
    crop.set_random_seed(0)
    hits = 0
    for _ in range(200):
        x1, y1, x2, y2 = crop.get_params_dependent_on_data({"shape": mask.shape}, {"mask": mask})[
            "crop_coords"
        ]
        assert (x2 - x1, y2 - y1) == (32, 32)
        counts = np.bincount(mask[y1:y2, x1:x2].ravel(), minlength=256)
        counts[ignore] = 0
        hits += (counts > 0).sum() > 1 and counts.max() / counts.sum() < ratio
    return hits / 200


def test_class_balanced_crop_redraws_crops_one_class_dominates() -> None:
    from vtk.data.transforms import ClassBalancedCrop

    mask = np.zeros((32, 64), np.uint8)
    mask[:, 32:] = 1  # a 32-wide crop is balanced when its left edge is in 9..23 (15 of 33)
    mask[:4] = 11  # ignored pixels are not counted
    balanced = ClassBalancedCrop(32, 32, 0.75, ignore_index=11)
    plain = ClassBalancedCrop(32, 32, 1.0, ignore_index=11)
    share = _balanced_share(balanced, mask, ignore=11)
    assert share > 0.97  # 10 tries: 1 - (18/33)^10 = 0.998
    assert 0.3 < _balanced_share(plain, mask, ignore=11) < 0.6  # a plain random crop: 15/33
    # nothing balanced to find: the 10th draw is kept, no endless loop
    assert _balanced_share(balanced, np.zeros((32, 64), np.uint8), ignore=11) == 0


def test_class_balanced_crop_refuses_an_image_smaller_than_the_crop() -> None:
    from vtk.data.transforms import ClassBalancedCrop

    with pytest.raises(ValueError, match="pad it first"):
        ClassBalancedCrop(32, 32).get_params_dependent_on_data(
            {"shape": (20, 64)}, {"mask": np.zeros((20, 64), np.uint8)}
        )


# -- RFB Net's preproc (ruinmessi/RFBNet, data/data_augment.py), transcribed -----------------
def _their_distort(image_bgr, brightness, contrast, hue, saturation):
    """``_distort`` with its draws given (None: the coin said no), on BGR as their code."""
    import cv2

    def _convert(image, alpha=1, beta=0):
        tmp = image.astype(float) * alpha + beta
        tmp[tmp < 0] = 0
        tmp[tmp > 255] = 255
        image[:] = tmp

    image = image_bgr.copy()
    if brightness is not None:
        _convert(image, beta=brightness)
    if contrast is not None:
        _convert(image, alpha=contrast)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    if hue is not None:
        tmp = image[:, :, 0].astype(int) + hue
        tmp %= 180
        image[:, :, 0] = tmp
    if saturation is not None:
        _convert(image[:, :, 1], alpha=saturation)
    return cv2.cvtColor(image, cv2.COLOR_HSV2BGR)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rfbnet_distortion_is_the_authors(seed) -> None:
    from vtk.data.transforms import photometric_distort

    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    draws = {"brightness": float(rng.uniform(-32, 32)), "contrast": float(rng.uniform(0.5, 1.5)),
             "hue": int(rng.integers(-18, 19)), "saturation": float(rng.uniform(0.5, 1.5))}  # fmt: skip
    ours = photometric_distort(rgb, contrast_first=True, hsv_once=True, **draws)
    theirs = _their_distort(rgb[..., ::-1].copy(), **draws)[..., ::-1]
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1  # float vs uint8 rounding


def test_rfbnet_zoom_out_jitters_the_aspect_as_the_authors() -> None:
    t = ZoomOut(4.0, p=1.0, aspect_jitter=True)
    seen = []
    for _ in range(300):
        params = t.get_params_dependent_on_data({"shape": (100, 100)}, {})
        h, w = params["canvas"]
        assert h >= 100 and w >= 100 and h <= 400 * 1.415 and w <= 400 * 1.415
        seen.append(w / h)
    # ratio² in [max(0.5, 1/s²), min(2, s²)]: the canvas's aspect spans 1/2 .. 2
    assert min(seen) < 0.7 and max(seen) > 1.4 and min(seen) >= 0.49 and max(seen) <= 2.01


def test_rfbnet_pipeline_warps_drops_tiny_boxes_and_falls_back() -> None:
    from vtk.data.transforms import DropTinyBoxes, RandomInterpolationResize, detection_resize

    t = detection_train(zoom_out_crop="rfbnet", photometric=True, size=64)
    names = [type(op).__name__ for op in t.transforms]
    assert names[-4:-2] == ["RandomInterpolationResize", "DropTinyBoxes"]
    boxes = np.array([[0.1, 0.1, 0.5, 0.5, 0], [0.2, 0.2, 0.205, 0.9, 1]])  # 0.5 % wide
    assert DropTinyBoxes(0.01).apply_to_bboxes(boxes).tolist() == [boxes[0].tolist()]
    resize = RandomInterpolationResize(32)
    chosen = {resize.get_params()["interpolation"] for _ in range(200)}
    assert chosen == set(RandomInterpolationResize.METHODS)
    image = np.zeros((40, 80, 3), np.uint8)
    out = detection_resize(32)(image=image, bboxes=[[8, 4, 40, 20]], labels=[0])
    assert out["image"].shape == (3, 32, 32)
    np.testing.assert_allclose(out["bboxes"][0], [3.2, 3.2, 16, 16], atol=1e-4)
