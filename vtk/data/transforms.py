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
