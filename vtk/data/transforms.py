"""All albumentations pipelines live here.

albumentations 2.0.8 (MIT) is frozen upstream and its successor is AGPL-licensed; keeping every
pipeline in this one module means a later switch to ``torchvision.transforms.v2`` stays local.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# albumentations checks PyPI for a newer release on import; never from a training job.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The label of pixels that are not scored (VOC's object borders, padding).
IGNORE_INDEX = 255

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
) -> A.Compose:
    """DeepLab's training augmentation (DeepLabv3 §4.1): random scale, pad, crop, flip.

    Padding fills the image with the mean colour (0 after normalisation) and the mask with
    :data:`IGNORE_INDEX`, so padded pixels are never scored.
    """
    h, w = _hw(crop_size)
    lo, hi = scale_range
    mean_pixel = tuple(255.0 * m for m in mean)
    return A.Compose(
        [
            A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0),
            A.PadIfNeeded(
                h, w, border_mode=cv2.BORDER_CONSTANT, fill=mean_pixel, fill_mask=IGNORE_INDEX
            ),
            A.RandomCrop(h, w),
            A.HorizontalFlip(p=hflip),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ]
    )


def segmentation_eval(
    pad_to: Size | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Evaluation: normalise, and pad at the bottom-right to at least ``pad_to`` (no random ops).

    Padding every image to the same size (DeepLab evaluates on 513x513) makes batches, and the
    image-pooling branch of ASPP, independent of which images share a batch. Predictions are
    read back from the top-left ``H x W`` of the output.
    """
    ops: list = [A.Normalize(mean=mean, std=std)]
    if pad_to is not None:
        h, w = _hw(pad_to)
        ops.append(
            A.PadIfNeeded(
                h,
                w,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            )
        )
    ops.append(ToTensorV2())
    return A.Compose(ops)


def classification_train(
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """ImageNet training augmentation (torchvision's reference): random-resized crop, flip."""
    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=tuple(scale), area_for_downscale="image"),
            A.HorizontalFlip(p=hflip),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ]
    )


def classification_eval(
    size: int,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Resize the shorter side to ``resize_size`` (default size / 0.875: 256 for 224), centre crop."""
    resize_size = resize_size or round(size / 0.875)
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=resize_size, area_for_downscale="image"),
            A.CenterCrop(size, size),
            A.Normalize(mean=mean, std=std),
            ToTensorV2(),
        ]
    )


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


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


def cifar_eval(
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> A.Compose:
    return A.Compose([A.Normalize(mean=mean, std=std), ToTensorV2()])


def detection_train(hflip: float = 0.5, photometric: bool = False) -> A.Compose:
    """Flip (and colour jitter) with boxes; resizing is the detector's own (torchvision's)
    transform, which also normalises. Output: RGB float in [0, 1], boxes in pixels (x1y1x2y2)."""
    ops: list = [A.HorizontalFlip(p=hflip)]
    if photometric:
        ops.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
    ops += [A.ToFloat(max_value=255.0), ToTensorV2()]
    return A.Compose(
        ops, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True)
    )


def detection_eval() -> A.Compose:
    """No geometry change: predictions come back in the image's own coordinates."""
    return A.Compose([A.ToFloat(max_value=255.0), ToTensorV2()])
