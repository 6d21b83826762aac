"""All albumentations pipelines live here.

albumentations 2.0.8 (MIT) is frozen upstream and its successor is AGPL-licensed; keeping every
pipeline in this one module means a later switch to ``torchvision.transforms.v2`` stays local.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

# albumentations checks PyPI for a newer release on import; never from a training job.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.pytorch import ToTensorV2
from torch import Tensor

from vtk.spec import CIFAR10_MEAN, CIFAR10_STD, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, InputSpec

Size = int | Sequence[int]


def _hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def segmentation_train(
    crop_size: Size,
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    cat_max_ratio: float = 1.0,
    photometric: bool = False,
    vflip: float = 0.0,
    rotate90: bool = False,
) -> A.Compose:
    """DeepLab's training augmentation (DeepLabv3 §4.1): random scale, pad, crop, flip; with
    mmsegmentation's options: a crop in which one class covers at most ``cat_max_ratio`` of
    the scored pixels (:class:`ClassBalancedCrop`) and :class:`PhotoMetricDistortion` after
    the flip (mmseg's order). For images without an up (retinas, cells, aerial views):
    ``vflip`` (a probability) and ``rotate90`` (a random quarter turn).

    Padding fills the image with the mean colour (0 after normalisation) and the mask with
    ``ignore_index``, so padded pixels are never scored.
    """
    h, w = _hw(crop_size)
    lo, hi = scale_range
    mean_pixel = tuple(255.0 * m for m in mean)
    crop = (
        A.RandomCrop(h, w)
        if cat_max_ratio >= 1.0
        else ClassBalancedCrop(h, w, cat_max_ratio, ignore_index)
    )
    return A.Compose(
        [
            A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0),
            A.PadIfNeeded(
                h, w, border_mode=cv2.BORDER_CONSTANT, fill=mean_pixel, fill_mask=ignore_index
            ),
            crop,
            A.HorizontalFlip(p=hflip),
            *([A.VerticalFlip(p=vflip)] if vflip else []),
            *([A.RandomRotate90(p=1.0)] if rotate90 else []),
            *([PhotoMetricDistortion()] if photometric else []),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ]
    )


class ClassBalancedCrop(BaseCrop):
    """mmsegmentation's ``RandomCrop(cat_max_ratio=...)``: a random ``height`` x ``width``
    crop, redrawn (up to 10 times, then the last one is kept) while a single class covers
    ``cat_max_ratio`` or more of its scored pixels, or it holds one class only; pixels labelled
    ``ignore_index`` are not counted. Keeps road- or sky-only crops from dominating training.
    The image must be at least the crop's size (pad first)."""

    def __init__(
        self,
        height: int,
        width: int,
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0.0 < cat_max_ratio <= 1.0:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}")
        self.height, self.width = height, width
        self.cat_max_ratio, self.ignore_index, self.tries = cat_max_ratio, ignore_index, tries

    def _draw(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        h, w = shape[:2]
        if h < self.height or w < self.width:
            raise ValueError(
                f"ClassBalancedCrop: a {w}x{h} image is smaller than the {self.width}x"
                f"{self.height} crop; pad it first (PadIfNeeded)."
            )
        top = self.py_random.randint(0, h - self.height)
        left = self.py_random.randint(0, w - self.width)
        return left, top, left + self.width, top + self.height

    def balanced(self, mask: np.ndarray) -> bool:
        """Whether a cropped mask has two classes or more and none over ``cat_max_ratio``."""
        counts = np.bincount(mask.ravel().astype(np.int64))
        if self.ignore_index < len(counts):
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        mask = data.get("mask")
        coords = self._draw(params["shape"])
        if mask is None or self.cat_max_ratio >= 1.0:
            return {"crop_coords": coords}
        for _ in range(self.tries - 1):
            x1, y1, x2, y2 = coords
            if self.balanced(mask[y1:y2, x1:x2]):
                break
            coords = self._draw(params["shape"])
        return {"crop_coords": coords}


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """The photometric distortion of SSD (Liu et al. 2016) as mmsegmentation and RFB Net's code
    apply it to a uint8 RGB image, each step with probability 1/2: brightness + delta
    (uniform in +-``brightness_delta``), contrast x alpha (``contrast_range``), saturation x
    alpha (``saturation_range``) and hue + delta (OpenCV's 0-180 hue, wrapped, in
    +-``hue_delta``) in HSV. Contrast comes first or last by a coin (mmseg,
    ``contrast_last=True``) or always first (SSD / RFB Net, ``contrast_last=False``). Values
    are clipped to 0..255 after each step. ``hsv_once``: RFB Net's ``_distort`` (its
    ``data/data_augment.py``): one trip through HSV, hue then saturation; otherwise mmseg's
    two, saturation then hue."""

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        contrast_last: bool = True,
        hsv_once: bool = False,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.hsv_once = hsv_once
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.contrast_last = contrast_last

    def get_params(self) -> dict[str, Any]:
        r = self.py_random

        def maybe(value: float) -> float | None:
            return value if r.random() < 0.5 else None

        return {
            "brightness": maybe(r.uniform(-self.brightness_delta, self.brightness_delta)),
            "contrast_first": not self.contrast_last or r.random() < 0.5,
            "contrast": maybe(r.uniform(*self.contrast_range)),
            "saturation": maybe(r.uniform(*self.saturation_range)),
            "hue": maybe(r.randint(-self.hue_delta, self.hue_delta)),
        }

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        draws = {k: params[k] for k in _DISTORT_KEYS}
        return photometric_distort(img, **draws, hsv_once=self.hsv_once)


_DISTORT_KEYS = ("brightness", "contrast_first", "contrast", "saturation", "hue")


def photometric_distort(
    img: np.ndarray,
    brightness: float | None,
    contrast_first: bool,
    contrast: float | None,
    saturation: float | None,
    hue: int | None,
    hsv_once: bool = False,
) -> np.ndarray:
    """:class:`PhotoMetricDistortion` with its draws given (None: the step is skipped), step by
    step as mmsegmentation computes it: each step back to uint8, saturation and hue each in
    their own trip through HSV (``hsv_once``: RFB Net's one trip, hue then saturation)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"PhotoMetricDistortion takes (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}"
        )

    def convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    if brightness is not None:
        img = convert(img, beta=brightness)
    if contrast_first and contrast is not None:
        img = convert(img, alpha=contrast)
    if hsv_once:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0].astype(np.int64) + hue) % 180
        if saturation is not None:
            hsv[..., 1] = convert(hsv[..., 1], alpha=saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        saturation = hue = None
    if saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = convert(hsv[..., 1], alpha=saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + hue) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and contrast is not None:
        img = convert(img, alpha=contrast)
    return img


def classification_train(
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    auto_augment: str | None = None,
    ra_magnitude: int = 9,
    random_erase: float = 0.0,
) -> Any:
    """ImageNet training augmentation (torchvision's reference): random-resized crop, flip;
    then, as the reference's ``--auto-augment`` and ``--random-erase``, a policy of
    torchvision.transforms.v2 (:func:`auto_augment_policy`) on the uint8 crop and random erasing
    of the normalised tensor (:class:`ClassificationTrain`)."""
    spatial = [
        A.RandomResizedCrop(size=(size, size), scale=tuple(scale), area_for_downscale="image"),
        A.HorizontalFlip(p=hflip),
    ]
    finish = [A.Normalize(mean=mean, std=std), ToTensorV2()]
    if auto_augment is None and not random_erase:
        return A.Compose([*spatial, *finish])
    if not 0.0 <= random_erase <= 1.0:
        raise ValueError(f"random_erase is a probability in [0, 1], got {random_erase}.")
    policy = auto_augment_policy(auto_augment, ra_magnitude) if auto_augment else None
    return ClassificationTrain(A.Compose(spatial), A.Compose(finish), policy, random_erase)


#: ``auto_augment`` policies (torchvision's reference ``--auto-augment``): name -> v2 transform
AUTO_AUGMENT = ("ra", "ta_wide", "augmix", "imagenet")


def auto_augment_policy(name: str, ra_magnitude: int = 9) -> Any:
    """torchvision.transforms.v2's policy of torchvision's reference ``--auto-augment NAME``:
    ``ra`` RandAugment (2 ops at ``ra_magnitude``), ``ta_wide`` TrivialAugmentWide, ``augmix``
    AugMix, ``imagenet`` AutoAugment's ImageNet policy; bilinear, as the reference."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import InterpolationMode

    bilinear = InterpolationMode.BILINEAR
    if name == "ra":
        return v2.RandAugment(magnitude=ra_magnitude, interpolation=bilinear)
    if name == "ta_wide":
        return v2.TrivialAugmentWide(interpolation=bilinear)
    if name == "augmix":
        return v2.AugMix(interpolation=bilinear)
    if name == "imagenet":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=bilinear)
    raise ValueError(f"auto_augment is one of {', '.join(AUTO_AUGMENT)}, not {name!r}.")


class ClassificationTrain:
    """A classification training pipeline in torchvision's reference order: albumentations'
    crop and flip on the uint8 image, the ``policy`` of torchvision.transforms.v2 (RandAugment
    ...) on it, normalisation to a tensor, then v2's RandomErasing (``erase`` probability) on
    the normalised tensor. Called as an albumentations pipeline: ``t(image=array)["image"]``."""

    def __init__(self, spatial: A.Compose, finish: A.Compose, policy: Any = None,
                 erase: float = 0.0) -> None:  # fmt: skip
        from torchvision.transforms import v2

        self.spatial, self.finish, self.policy = spatial, finish, policy
        self.erasing = v2.RandomErasing(p=erase, value=0) if erase > 0 else None

    def __call__(self, image: np.ndarray, **_: Any) -> dict[str, Any]:
        image = self.spatial(image=image)["image"]
        if self.policy is not None:
            chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
            image = self.policy(chw).permute(1, 2, 0).numpy()
        out = self.finish(image=image)["image"]
        if self.erasing is not None:
            out = self.erasing(out)
        return {"image": out}

    def __repr__(self) -> str:
        return f"ClassificationTrain({self.spatial}, policy={self.policy}, erasing={self.erasing})"


def cifar_train(
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> A.Compose:
    """ResNet paper §4.2: pad 4 pixels on each side, random 32x32 crop, horizontal flip."""
    return A.Compose(
        [
            A.PadIfNeeded(40, 40, border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(32, 32),
            A.HorizontalFlip(p=0.5),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ]
    )


def detection_train(
    hflip: float = 0.5,
    photometric: bool = False,
    zoom_out_crop: bool | str = False,
    fill: Sequence[float] = IMAGENET_MEAN,
    vflip: float = 0.0,
    size: int | None = None,
) -> A.Compose:
    """Flip (and photometric distortion, SSD's sampling) with boxes; resizing is the
    detector's own (torchvision's) transform, which also normalises. Output: RGB float in
    [0, 1], boxes in pixels (x1y1x2y2).

    ``photometric`` is SSD's distortion as RFB Net's code applies it
    (:class:`PhotoMetricDistortion` with contrast first: brightness +-32, contrast and
    saturation x0.5-1.5, hue +-18, each half of the time). ``zoom_out_crop`` adds SSD's
    sampling (Liu et al. 2016 §2.2 "Data augmentation", §3.6): a zoom out of up to 4x
    (:class:`ZoomOut`) and a patch with a minimum IoU with the objects
    (:class:`MinIoURandomCrop`). ``True`` or ``"ssd"``: ssd.pytorch's order, distortion ->
    zoom out (half of the time) -> crop -> flip; ``"rfbnet"``: RFB Net's ``preproc``, crop ->
    distortion (one trip through HSV) -> zoom out (p 0.6, its aspect jittered) -> flip, and
    with ``size`` (the detector's square) a resize with one of five interpolations drawn at
    random, then boxes whose shorter side is at most 1 % of the image dropped. ``fill`` (RGB in [0, 1]) is the colour around a
    zoomed-out image (the mean, so it normalises to 0). ``vflip``: vertical flips too (a
    probability), for images without an up (cells, aerial views).
    """
    if zoom_out_crop not in (False, True, "ssd", "rfbnet"):
        raise ValueError(
            f"zoom_out_crop must be false, true, 'ssd' or 'rfbnet', got {zoom_out_crop!r}"
        )
    fill_pixel = tuple(255.0 * f for f in fill)
    rfbnet = zoom_out_crop == "rfbnet"
    distort = [PhotoMetricDistortion(contrast_last=False, hsv_once=rfbnet)] if photometric else []
    ops: list = []
    if rfbnet:
        ops += [MinIoURandomCrop(), *distort,
                ZoomOut(4.0, fill=fill_pixel, p=0.6, aspect_jitter=True)]  # fmt: skip
    elif zoom_out_crop:
        ops += [*distort, ZoomOut(4.0, fill=fill_pixel, p=0.5), MinIoURandomCrop()]
    else:
        ops += distort
    ops += [A.HorizontalFlip(p=hflip), *([A.VerticalFlip(p=vflip)] if vflip else [])]
    if rfbnet and size is not None:  # RFB Net warps to its square with a random interpolation
        ops += [RandomInterpolationResize(size), DropTinyBoxes(0.01)]
    ops += [A.ToFloat(max_value=255.0), ToTensorV2()]
    return A.Compose(
        ops,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["labels"], clip=True, min_area=1.0
        ),
    )


def detection_resize(size: int) -> A.Compose:
    """RFB Net's fallback when its augmentation left no box: the original image warped to the
    square with a random interpolation, its boxes kept."""
    return A.Compose(
        [RandomInterpolationResize(size), A.ToFloat(max_value=255.0), ToTensorV2()],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True),
    )


class ZoomOut(A.DualTransform):
    """SSD's "expansion" (§3.6): the image on a canvas ``ratio`` times its size (``ratio``
    uniform in 1..``max_ratio``) at a random place, the rest ``fill``; objects get smaller,
    which is what lifts SSD's small-object recall."""

    def __init__(
        self, max_ratio: float = 4.0, fill: Sequence[float] = (0.0, 0.0, 0.0), p: float = 0.5,
        aspect_jitter: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(p=p)
        self.max_ratio, self.fill, self.aspect_jitter = max_ratio, tuple(fill), aspect_jitter

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        if self.aspect_jitter:  # RFB Net's _expand: the canvas's aspect jittered too
            for _ in range(50):
                scale = self.py_random.uniform(1.0, self.max_ratio)
                low, high = max(0.5, 1 / scale**2), min(2.0, scale**2)
                aspect = math.sqrt(self.py_random.uniform(low, high))
                ws, hs = scale * aspect, scale / aspect
                if ws >= 1 and hs >= 1:
                    canvas = (int(hs * h), int(ws * w))
                    break
            else:
                canvas = (h, w)
        else:
            ratio = self.py_random.uniform(1.0, self.max_ratio)
            canvas = (int(h * ratio), int(w * ratio))
        top = self.py_random.randint(0, canvas[0] - h)
        left = self.py_random.randint(0, canvas[1] - w)
        return {"canvas": canvas, "top": top, "left": left}

    def apply(
        self, img: np.ndarray, canvas: tuple[int, int], top: int, left: int, **params: Any
    ) -> np.ndarray:
        out = np.empty((*canvas, *img.shape[2:]), dtype=img.dtype)
        out[...] = np.asarray(self.fill[: img.shape[2]] if img.ndim == 3 else self.fill[0])
        out[top : top + img.shape[0], left : left + img.shape[1]] = img
        return out

    def apply_to_bboxes(
        self, bboxes: np.ndarray, canvas: tuple[int, int], top: int, left: int, **params: Any
    ) -> np.ndarray:
        h, w = params["shape"][:2]  # normalised boxes: to the canvas' normalised frame
        out = bboxes.copy()
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * w + left) / canvas[1]
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * h + top) / canvas[0]
        return out


class RandomInterpolationResize(A.DualTransform):
    """RFB Net's ``preproc_for_test`` in training: a warp to ``size`` x ``size`` with one of
    OpenCV's linear, cubic, area, nearest and Lanczos interpolations, drawn per image."""

    METHODS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
               cv2.INTER_LANCZOS4)  # fmt: skip

    def __init__(self, size: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size = size

    def get_params(self) -> dict[str, Any]:
        return {"interpolation": self.py_random.choice(self.METHODS)}

    def apply(self, img: np.ndarray, interpolation: int = cv2.INTER_LINEAR, **params: Any):
        return cv2.resize(img, (self.size, self.size), interpolation=interpolation)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes  # normalised: a warp of the whole image leaves them as they are


class DropTinyBoxes(A.DualTransform):
    """Drop the boxes whose shorter side is at most ``fraction`` of the image's side (RFB Net's
    ``mask_b = min(b_w, b_h) > 0.01`` on normalised boxes)."""

    def __init__(self, fraction: float = 0.01, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.fraction = fraction

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        shorter = np.minimum(bboxes[:, 2] - bboxes[:, 0], bboxes[:, 3] - bboxes[:, 1])
        return bboxes[shorter > self.fraction]


class MinIoURandomCrop(BaseCrop):
    """SSD's patch sampling (§2.2), as ssd.pytorch and RFB Net's code sample it: a mode is drawn
    among the whole image, a minimum IoU of 0.1, 0.3, 0.5, 0.7 or 0.9 with every object, or
    any patch; up to 50 patches of scale 0.3-1 and aspect 1/2-2 are tried for it (else another
    mode); objects whose centre is in the patch are kept, cut to it."""

    MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0)  # None: the whole image

    def __init__(self, tries: int = 50, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.tries = tries

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        bboxes = np.asarray(data.get("bboxes", np.zeros((0, 4))))[:, :4] * [w, h, w, h]
        for _ in range(100):  # modes redrawn until one is met; the whole image is one of them
            min_iou = self.py_random.choice(self.MODES)
            if min_iou is None or len(bboxes) == 0:
                return {"crop_coords": (0, 0, w, h)}
            for _ in range(self.tries):
                scale = self.py_random.uniform(0.3, 1.0)
                lo, hi = max(0.5, scale * scale), min(2.0, 1.0 / scale / scale)
                ratio = math.sqrt(self.py_random.uniform(lo, hi))
                cw, ch = int(scale * ratio * w), int(scale / ratio * h)
                if cw < 1 or ch < 1:
                    continue
                left, top = self.py_random.randint(0, w - cw), self.py_random.randint(0, h - ch)
                patch = np.array([left, top, left + cw, top + ch], dtype=np.float64)
                if _iou(bboxes, patch).min() < min_iou or not _centres_in(bboxes, patch).any():
                    continue
                return {"crop_coords": (left, top, left + cw, top + ch)}
        return {"crop_coords": (0, 0, w, h)}

    def apply_to_bboxes(
        self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        h, w = params["shape"][:2]
        kept = bboxes[_centres_in(bboxes[:, :4] * [w, h, w, h], np.asarray(crop_coords))]
        return super().apply_to_bboxes(kept, crop_coords, **params)


def _iou(boxes: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """IoU of each (x1, y1, x2, y2) box with one patch."""
    lt, rb = np.maximum(boxes[:, :2], patch[:2]), np.minimum(boxes[:, 2:4], patch[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (patch[2] - patch[0]) * (patch[3] - patch[1]) - inter)


def _centres_in(boxes: np.ndarray, patch: np.ndarray) -> np.ndarray:
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > patch[0]) & (cx < patch[2]) & (cy > patch[1]) & (cy < patch[3])


def eval_transform(spec: InputSpec, ignore_index: int = IGNORE_INDEX) -> A.Compose:
    """The evaluation pipeline an :class:`~vtk.spec.InputSpec` says (its :meth:`steps
    <vtk.spec.InputSpec.steps>`, as albumentations ops): ``(H, W, 3)`` uint8 (and a mask) ->
    ``(3, H', W')`` float; masks padded by ``pad_to`` get ``ignore_index``."""
    ops: list = []
    steps = dict(spec.steps())
    for name, arg in spec.steps():
        if name == "resize":
            ops.append(A.SmallestMaxSize(max_size=arg, area_for_downscale="image"))
        elif name == "crop":
            ops.append(A.CenterCrop(*arg))
        elif name == "scale" and "normalise" not in steps:
            ops.append(A.ToFloat(max_value=255.0))
        elif name == "normalise":  # (albumentations' Normalize scales and normalises at once)
            ops.append(A.Normalize(mean=arg[0], std=arg[1]))
        elif name == "pad":
            ops.append(
                A.PadIfNeeded(
                    *arg, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0,
                    fill_mask=ignore_index,
                )
            )  # fmt: skip
    ops.append(ToTensorV2())
    return A.Compose(ops)


def to_uint8(image: Tensor, spec: InputSpec) -> Tensor:
    """An image :func:`eval_transform` made, back to ``(3, H, W)`` uint8 RGB (for drawing)."""
    x = image.float()
    if spec.mean is not None and spec.std is not None:
        x = x * torch.tensor(spec.std)[:, None, None] + torch.tensor(spec.mean)[:, None, None]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
