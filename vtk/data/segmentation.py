"""Semantic segmentation data: Pascal VOC 2012 and image/mask folders.

Two layouts are read:

* **Pascal VOC 2012** (``VOCSegmentationDataModule``)::

      ROOT/JPEGImages/<id>.jpg
      ROOT/SegmentationClass/<id>.png          palette PNG, 255 = ignore (object borders)
      ROOT/SegmentationClassAug/<id>.png       optional: SBD masks for the train_aug split
      ROOT/ImageSets/Segmentation/{train,val,train_aug}.txt

* **image/mask folders** (``MaskFolderDataModule``), e.g. a Roboflow "PNG masks" export::

      DIR/<name>.jpg + DIR/<name>_mask.png     (mask suffix and mask folder configurable)
      DIR/_classes.csv                         optional "pixel value, class name" table

A DataModule says ``num_classes`` (and ``class_names``); the ``vtk`` command links it to the
model, so the number is said once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vtk.data import transforms as T
from vtk.data.base import (
    STAGE_SPLITS,
    ImageFileDataset,
    OnBadImage,
    VisionDataModule,
    list_collate,
    split_source,
)
from vtk.data.io import open_image
from vtk.data.masks import (
    MaskDecoder,
    SplitCounts,
    audit,
    count_split,
    median_frequency_weights,
    read_labelmap,
)
from vtk.data.segmentation_samples import (  # noqa: F401  (importable from here too)
    VOC_HOWTO,
    Sample,
    check_sizes,
    folder_samples,
    read_classes_csv,
    voc_samples,
)
from vtk.drawing import draw_label_map
from vtk.errors import ConfigError, DataError
from vtk.spec import IGNORE_INDEX, InputSpec

log = logging.getLogger("vtk")

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


# -- the dataset ------------------------------------------------------------------------------
class SegmentationDataset(ImageFileDataset):
    """Image/mask pairs through an albumentations pipeline.

    Each item is ``{"image": (3,H,W) float, "mask": (H,W) int64, "id", "path", "size": (h, w)}``
    where ``size`` is the image's size on disk. Masks are decoded (:class:`MaskDecoder`: label
    map, reduced zero label, colours) and checked as they are read: same size as the image,
    values below ``num_classes`` or the ignore index. An image that cannot be decoded stops the
    run, or with ``on_bad_image="skip"`` is logged and left out of its batch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        decoder: MaskDecoder,
        transform: Any,
        on_bad_image: OnBadImage = "error",
    ) -> None:
        super().__init__(samples, transform, on_bad_image)
        self.decoder = decoder

    def image_path(self, sample: Sample) -> Path:
        return sample.image

    def item(self, sample: Sample, image: np.ndarray) -> dict[str, Any]:
        mask = self.decoder.read(sample.mask)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{sample.image} is {image.shape[1]}x{image.shape[0]} (width x height). "
                "Re-export the pair at one size or remove it."
            )
        self.decoder.check(mask, sample.mask)
        if sample.roi is not None:
            mask = self._outside_roi_ignored(mask, sample)
        out = self.transform(image=image, mask=mask)
        return {
            "image": out["image"],
            "mask": out["mask"].long(),
            "id": sample.id,
            "path": str(sample.image),
            "size": image.shape[:2],
        }

    def _outside_roi_ignored(self, mask: np.ndarray, sample: Sample) -> np.ndarray:
        roi = np.asarray(open_image(sample.roi).convert("L"))  # type: ignore[arg-type]
        if roi.shape != mask.shape:
            raise DataError(
                f"region-of-interest mask {sample.roi} is {roi.shape[1]}x{roi.shape[0]} but the "
                f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} (width x height)."
            )
        mask = mask.copy()
        mask[roi == 0] = self.decoder.ignore_index
        return mask


def pad_stack(tensors: Sequence[Tensor], value: float) -> Tensor:
    """Stack ``(..., H, W)`` tensors, padding each at the bottom-right to the largest size."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    return torch.stack(
        [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in tensors]
    )


def collate(
    batch: list[dict[str, Any] | None], ignore_index: int = IGNORE_INDEX
) -> dict[str, Any] | None:
    """Stack a batch, padding images (0: the mean colour) and masks (``ignore_index``) at the
    bottom-right if sizes differ; images that could not be decoded (``None``) are left out."""
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return {
        "image": pad_stack([b["image"] for b in kept], 0.0),
        "mask": pad_stack([b["mask"] for b in kept], ignore_index),
        "id": [b["id"] for b in kept],
        "path": [b["path"] for b in kept],
        "size": [tuple(b["size"]) for b in kept],
    }


# -- DataModules ------------------------------------------------------------------------------
class SegmentationDataModule(VisionDataModule):
    """Loaders, augmentation, label conventions and ``num_classes`` for semantic segmentation.

    Subclasses say where the samples of each split are (:meth:`samples`).

    Args:
        num_classes: classes including background (linked to the model by ``vtk``).
        class_names: one name per class, for per-class metrics and drawn predictions.
        crop_size: training crop (513 in DeepLab).
        scale_range: random scale factor range for training (0.5-2.0 in DeepLab).
        cat_max_ratio: redraw a training crop (up to 10 times) while one class covers this
            share of its scored pixels or more (mmsegmentation's 0.75; 1.0: any crop).
        photometric: mmsegmentation's ``PhotoMetricDistortion`` on training images
            (brightness, contrast, saturation, hue; :class:`vtk.data.transforms.PhotoMetricDistortion`).
        vflip, rotate90: vertical flips (a probability) and random quarter turns in training,
            for images without an up (retinas, cells, aerial views).
        mean, std: normalisation of RGB in [0, 1]; by default what the network's weights were
            trained with (torchvision's weights enum, timm's ``pretrained_cfg``, a vtk weights
            card: the ``vtk`` command hands them over), else ImageNet's.
        ignore_index: the label of pixels that are not scored (linked to the task).
        label_map: ``{value on disk: class index or "ignore"}``; other values pass through.
        reduce_zero_label: 0 -> ignore, k -> k - 1 (ADE20K).
        palette: for colour masks: the RGB colour of each class, or the path of a CVAT
            ``labelmap.txt`` (which then also gives the class names and their number).
        mask_threshold: binary masks saved lossy (JPEG: values near 0 and 255 plus noise):
            values at or above it are the object (class 1), the rest background (0);
            ``num_classes: 2``.
        nearest_colour: colour masks saved lossy: each pixel takes the class of the nearest
            palette colour instead of stopping at a colour not in the palette.
        audit: count every mask's values at setup (cached), log the table and stop on what
            would train or score wrong (see :func:`vtk.data.masks.audit`).
        **kwargs: see :class:`~vtk.data.base.VisionDataModule` (``batch_size``,
            ``val_batch_size``, ``num_workers``, ``on_bad_image``, ``predict_dir``).

    Evaluation and prediction see every image at its own size (no crop, no padding); the task
    decides how to run the network on it (``eval_mode``).
    """

    streams = True

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        crop_size: int | tuple[int, int] = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 1.0,
        photometric: bool = False,
        vflip: float = 0.0,
        rotate90: bool = False,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        label_map: dict[int, int | str] | None = None,
        reduce_zero_label: bool = False,
        palette: list[list[int]] | str | None = None,
        mask_threshold: int | None = None,
        nearest_colour: bool = False,
        audit: bool = True,
        **kwargs: Any,
    ) -> None:
        colours = palette
        if isinstance(palette, str):
            names, colours = read_labelmap(palette)
            class_names = class_names or names
            num_classes = num_classes or len(names)
        if num_classes is None and kwargs.get("stream") is not None:
            from vtk.data.stream import stream_facts

            facts = stream_facts(kwargs["stream"], kwargs.get("stream_cache"),
                                 kwargs.get("stream_options"))  # fmt: skip
            num_classes, class_names = facts["num_classes"], class_names or facts["class_names"]
        if num_classes is None:
            raise DataError("num_classes is not given: set --data.num_classes N.")
        super().__init__(num_classes, class_names, **kwargs)
        self.crop_size = crop_size
        self.scale_range = scale_range
        if not 0.0 < cat_max_ratio <= 1.0:
            raise DataError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}.")
        self.cat_max_ratio, self.photometric = cat_max_ratio, photometric
        self.vflip, self.rotate90 = vflip, rotate90
        self.init_normalisation(mean, std)
        self.ignore_index = ignore_index
        try:
            self.decoder = MaskDecoder(
                num_classes, ignore_index, dict(label_map or {}), reduce_zero_label, colours,
                mask_threshold, nearest_colour,
            )  # fmt: skip
        except ConfigError as e:
            raise DataError(str(e)) from None
        self.audit = audit

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` ("train", "val" or "test")."""
        raise NotImplementedError

    def train_transform(self) -> Any:
        return T.segmentation_train(
            self.crop_size, self.scale_range, mean=self.mean, std=self.std,
            ignore_index=self.ignore_index, cat_max_ratio=self.cat_max_ratio,
            photometric=self.photometric, vflip=self.vflip, rotate90=self.rotate90,
        )  # fmt: skip

    def eval_spec(self) -> InputSpec:
        return InputSpec(self.mean, self.std)  # each image at its own size

    def eval_transform(self) -> Any:
        return T.eval_transform(self.eval_spec(), self.ignore_index)

    def collate(self, split: str) -> Any:
        """Training crops are stacked (masks padded with the ignore index); evaluation images
        keep their own sizes, as lists."""
        if split == "train":
            return partial(collate, ignore_index=self.ignore_index)
        return list_collate

    def make_dataset(self, split: str) -> SegmentationDataset:
        samples = self.carve(split, self.samples, key=lambda sample: str(sample.image))
        if self.stream is None:  # a stream's pairs were checked when it was written
            samples = check_sizes(samples, self.on_bad_image, self.exif)
        return SegmentationDataset(samples, self.decoder, self.transform(split), self.on_bad_image)

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        image = T.to_uint8(item["image"], self.eval_spec())
        return draw_label_map(image, item["mask"], self.num_classes)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self._check_disjoint("train", "val")
        if self.audit and stage != "predict" and self.stream is None:  # (audited when written)
            self.audit_masks([s for s in STAGE_SPLITS[stage] if s in self.datasets])

    def split_counts(self, split: str) -> SplitCounts:
        """Pixels per class of ``split``'s masks (read once, then cached)."""
        dataset = self.datasets.get(split) or self.make_dataset(split)
        masks = list(dict.fromkeys(s.mask for s in dataset.samples))  # each file once
        return count_split(self.decoder, masks, self.num_workers)

    def audit_masks(self, splits: Sequence[str]) -> None:
        counts = {split: self.split_counts(split) for split in splits}
        if "train" not in counts and "val" in counts:
            with contextlib.suppress(DataError):  # to warn about classes only evaluation has
                counts = {"train": self.split_counts("train"), **counts}
        table = audit(self.decoder, counts, self.class_names)
        if self.trainer is None or self.trainer.is_global_zero:
            log.info("%s", table)

    def class_weights(self) -> list[float]:
        """SegNet's median frequency balancing over the training masks (``class_weights:
        auto`` of the loss)."""
        return median_frequency_weights(self.split_counts("train"), self.num_classes)

    def _check_disjoint(self, a: str, b: str) -> None:
        shared = {s.image for s in self.datasets[a].samples} & {
            s.image for s in self.datasets[b].samples
        }
        if shared:
            raise DataError(
                f"{len(shared)} images are in both the {a} and the {b} split (e.g. "
                f"{sorted(shared)[0]}); validation on training images gives a meaningless score. "
                f"Remove them from the {a} list."
            )


class VOCSegmentationDataModule(SegmentationDataModule):
    """Pascal VOC 2012 segmentation (21 classes, 255 = ignore), or any set in its layout — a
    CVAT "Segmentation mask" export, with ``palette: path/to/labelmap.txt``.

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages``).
        train_split, val_split, test_split: names of lists in ``ImageSets/Segmentation``;
            ``train_aug`` is the 10,582-image SBD-augmented list used by DeepLab. No test
            split unless given (VOC's test masks are not public; ``test_split: val``
            evaluates the validation images, and says so).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/VOCdevkit/VOC2012",
        train_split: str = "train_aug",
        val_split: str = "val",
        test_split: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        palette: list[list[int]] | str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(palette, str):  # a labelmap gives its own classes; else VOC's
            num_classes = num_classes or len(VOC_CLASSES)
            class_names = class_names or (VOC_CLASSES if num_classes == len(VOC_CLASSES) else None)
        super().__init__(num_classes, class_names, palette=palette, **kwargs)
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split}

    test_option = "--data.test_split NAME (a list in ImageSets/Segmentation)"

    def test_source(self) -> str | None:
        return split_source(self.splits)

    def samples(self, split: str) -> list[Sample]:
        return voc_samples(self.root, self.splits[split])


class MaskFolderDataModule(SegmentationDataModule):
    """Image/mask pairs in folders, matched by name: a Roboflow "Semantic Segmentation Masks"
    export (``<name>.jpg`` + ``<name>_mask.png``), CamVid as SegNet ships it (``train/`` +
    ``trainannot/``, same names), or any pattern (``image_suffix`` / ``mask_suffix``,
    sub-folders with ``recursive``).

    Args:
        train_dir, val_dir, test_dir: folders of images (and of masks, unless the mask folders
            are given); no test split without ``test_dir`` (``vtk test`` then stops; the
            validation folder as ``test_dir`` evaluates it, and says so).
        train_masks, val_masks, test_masks: each split's mask folder (CamVid's
            ``trainannot/``), when masks are not beside the images.
        mask_dir_name: or: masks in a sibling folder of each split folder with this name
            (``masks`` for ``train/images`` + ``train/masks``).
        mask_suffix: a mask's name is its image's name without ``image_suffix`` plus this.
        image_suffix: the end of an image's name that its mask's replaces (default its
            extension; ``_leftImg8bit.png`` for Cityscapes).
        recursive: look into sub-folders (matched at the same relative path).
        num_classes: classes incl. background; read from ``train_dir/_classes.csv`` (or the
            palette's labelmap) if omitted.
        class_names: names by class index; also read from ``_classes.csv`` if present.
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        test_dir: str | None = None,
        train_masks: str | None = None,
        val_masks: str | None = None,
        test_masks: str | None = None,
        mask_dir_name: str | None = None,
        mask_suffix: str = "_mask.png",
        image_suffix: str | None = None,
        recursive: bool = False,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        table = Path(train_dir).expanduser() / "_classes.csv"
        if class_names is None and table.is_file():
            class_names = read_classes_csv(table)
            if num_classes is not None and num_classes != len(class_names):
                raise DataError(
                    f"num_classes is {num_classes}, but {table} lists {len(class_names)} "
                    f"classes ({', '.join(class_names[:12])}{' ...' if len(class_names) > 12 else ''}"
                    "), which the masks' values index: leave --data.num_classes out to use the "
                    "file's classes (the mask audit then shows which occur), or give class_names."
                )
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        streamed = kwargs.get("stream") is not None  # (the stream then says)
        if num_classes is None and not isinstance(kwargs.get("palette"), str) and not streamed:
            raise DataError(
                f"num_classes is not given and {table} does not exist; set "
                "--data.num_classes N (classes including background)."
            )
        super().__init__(num_classes=num_classes, class_names=class_names, **kwargs)
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.mask_dirs = {"train": train_masks, "val": val_masks, "test": test_masks}
        if test_dir is not None and test_masks is None and _same_dir(test_dir, val_dir):
            self.mask_dirs["test"] = val_masks  # the validation images, with their masks
        self.mask_dir_name = mask_dir_name
        self.mask_suffix, self.image_suffix, self.recursive = mask_suffix, image_suffix, recursive

    test_option = (
        "--data.test_dir DIR (and --data.test_masks DIR when the masks are not beside the images)"
    )

    def test_source(self) -> str | None:
        if self.dirs["test"] is None:
            return None
        if _same_dir(self.dirs["test"], self.dirs["val"]):
            return f"the validation images ({self.dirs['val']}), as test_dir says"
        return ""

    def samples(self, split: str) -> list[Sample]:
        if self.dirs[split] is None:
            raise DataError(
                f"no {split} images: give --data.{split}_dir DIR, or carve them out of the "
                f"training folder with --data.{split}_fraction (e.g. 0.2)."
            )
        image_dir = Path(self.dirs[split]).expanduser()
        mask_dir: Path | None = None
        if self.mask_dirs[split]:
            mask_dir = Path(self.mask_dirs[split]).expanduser()  # type: ignore[arg-type]
        elif self.mask_dir_name:
            mask_dir = image_dir.parent / self.mask_dir_name
        return folder_samples(
            image_dir, mask_dir, self.mask_suffix, self.image_suffix, self.recursive
        )


def _same_dir(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).expanduser() == Path(b).expanduser()
