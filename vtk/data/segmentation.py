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

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vtk.data import transforms as T
from vtk.data.base import ImageFileDataset, OnBadImage, VisionDataModule
from vtk.data.io import IMAGE_SUFFIXES, is_image_file, read_mask
from vtk.drawing import draw_label_map
from vtk.errors import DataError
from vtk.models.weights import IMAGENET_MEAN, IMAGENET_STD

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
    id: str
    image: Path
    mask: Path


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


def folder_samples(
    image_dir: str | Path, mask_dir: str | Path | None = None, mask_suffix: str = "_mask.png"
) -> list[Sample]:
    """Pairs ``<name><image suffix>`` in ``image_dir`` with ``<name><mask_suffix>`` in ``mask_dir``."""
    image_dir = Path(image_dir).expanduser()
    mask_dir = image_dir if mask_dir is None else Path(mask_dir).expanduser()
    for d, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise DataError(f"{what} folder {d} does not exist; check the path in the recipe.")
    masks = {
        p.name[: -len(mask_suffix)]: p for p in mask_dir.iterdir() if p.name.endswith(mask_suffix)
    }
    same_dir = mask_dir.resolve() == image_dir.resolve()
    images = {
        p.stem: p
        for p in image_dir.iterdir()
        if is_image_file(p) and not (same_dir and p.name.endswith(mask_suffix))
    }
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}.")
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask:
        raise DataError(
            f"{len(no_mask)} images in {image_dir} have no mask named <name>{mask_suffix} in "
            f"{mask_dir} (e.g. {images[no_mask[0]].name} has no {no_mask[0]}{mask_suffix}). "
            "Add the masks, remove the images, or set mask_suffix."
        )
    if no_image:
        raise DataError(
            f"{len(no_image)} masks in {mask_dir} have no image in {image_dir} (e.g. "
            f"{masks[no_image[0]].name}). Add the images or remove the masks."
        )
    return [Sample(k, images[k], masks[k]) for k in sorted(images)]


def check_sizes(samples: Sequence[Sample], on_bad_image: OnBadImage = "error") -> list[Sample]:
    """Compare each image's size with its mask's from the file headers (no decoding); returns
    the samples, less those whose header cannot be read when ``on_bad_image="skip"``.

    Done when a split is set up, so a mismatched pair stops the run before training starts
    rather than hours into it.
    """
    bad, unreadable = [], []
    for s in samples:
        try:
            with Image.open(s.image) as image, Image.open(s.mask) as mask:
                if image.size != mask.size:
                    bad.append((s, image.size, mask.size))
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
            f"{m.mask} is {ms[0]}x{ms[1]}, its image {is_[0]}x{is_[1]}" for m, is_, ms in bad[:3]
        )
        raise DataError(
            f"{len(bad)} masks differ in size from their images (width x height): {listing}"
            f"{' ...' if len(bad) > 3 else ''}. Re-export these pairs at one size or remove them."
        )
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
    where ``size`` is the image's size on disk. Masks are checked as they are read: same size
    as the image, values below ``num_classes`` or :data:`~vtk.data.transforms.IGNORE_INDEX`.
    An image that cannot be decoded stops the run, or with ``on_bad_image="skip"`` is logged
    and left out of its batch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        num_classes: int,
        transform: Any,
        on_bad_image: OnBadImage = "error",
    ) -> None:
        super().__init__(samples, transform, on_bad_image)
        self.num_classes = num_classes

    def image_path(self, sample: Sample) -> Path:
        return sample.image

    def item(self, sample: Sample, image: np.ndarray) -> dict[str, Any]:
        mask = read_mask(sample.mask)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{sample.image} is {image.shape[1]}x{image.shape[0]} (width x height). "
                "Re-export the pair at one size or remove it."
            )
        bad = (mask >= self.num_classes) & (mask != T.IGNORE_INDEX)
        if bad.any():
            values = np.unique(mask[bad]).tolist()
            raise DataError(
                f"mask {sample.mask} has values {values[:10]} but num_classes is "
                f"{self.num_classes} (valid: 0..{self.num_classes - 1}, and {T.IGNORE_INDEX} = "
                "ignore). Fix num_classes or remap the mask."
            )
        out = self.transform(image=image, mask=mask)
        return {
            "image": out["image"],
            "mask": out["mask"].long(),
            "id": sample.id,
            "path": str(sample.image),
            "size": image.shape[:2],
        }


def pad_stack(tensors: Sequence[Tensor], value: float) -> Tensor:
    """Stack ``(..., H, W)`` tensors, padding each at the bottom-right to the largest size."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    return torch.stack(
        [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in tensors]
    )


def collate(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack a batch, padding images (0: the mean colour) and masks (ignore) at the
    bottom-right if sizes differ; images that could not be decoded (``None``) are left out."""
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return {
        "image": pad_stack([b["image"] for b in kept], 0.0),
        "mask": pad_stack([b["mask"] for b in kept], T.IGNORE_INDEX),
        "id": [b["id"] for b in kept],
        "path": [b["path"] for b in kept],
        "size": [tuple(b["size"]) for b in kept],
    }


# -- DataModules ------------------------------------------------------------------------------
class SegmentationDataModule(VisionDataModule):
    """Loaders, augmentation and ``num_classes`` for semantic segmentation.

    Subclasses say where the samples of each split are (:meth:`samples`).

    Args:
        num_classes: classes including background (linked to the model by ``vtk``).
        class_names: one name per class, for per-class metrics and drawn predictions.
        crop_size: training crop (513 in DeepLab); evaluation pads to at least this size.
        scale_range: random scale factor range for training (0.5-2.0 in DeepLab).
        mean, std: normalisation (ImageNet's, as the pretrained backbones expect).
        **kwargs: see :class:`~vtk.data.base.VisionDataModule` (``batch_size``,
            ``val_batch_size``, ``num_workers``, ``on_bad_image``, ``predict_dir``).
    """

    collate_fn = staticmethod(collate)

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        crop_size: int | tuple[int, int] = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, class_names, **kwargs)
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.mean, self.std = mean, std

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` ("train", "val" or "test")."""
        raise NotImplementedError

    def train_transform(self) -> Any:
        return T.segmentation_train(self.crop_size, self.scale_range, mean=self.mean, std=self.std)

    def eval_spec(self) -> T.InputSpec:
        # padding every image to the same size (DeepLab evaluates on 513x513) makes batches,
        # and ASPP's image pooling, independent of which images share a batch
        return T.InputSpec(self.mean, self.std, pad_to=self.crop_size)

    def make_dataset(self, split: str) -> SegmentationDataset:
        samples = check_sizes(self.samples(split), self.on_bad_image)
        return SegmentationDataset(
            samples, self.num_classes, self.transform(split), self.on_bad_image
        )

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        image = self.eval_spec().to_uint8(item["image"])
        return draw_label_map(image, item["mask"], self.num_classes)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self._check_disjoint("train", "val")

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
    """Pascal VOC 2012 segmentation (21 classes, 255 = ignore).

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages``).
        train_split, val_split, test_split: names of lists in ``ImageSets/Segmentation``;
            ``train_aug`` is the 10,582-image SBD-augmented list used by DeepLab.
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str = "data/VOCdevkit/VOC2012",
        train_split: str = "train_aug",
        val_split: str = "val",
        test_split: str = "val",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=len(VOC_CLASSES), class_names=VOC_CLASSES, **kwargs)
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split}

    def samples(self, split: str) -> list[Sample]:
        return voc_samples(self.root, self.splits[split])


class MaskFolderDataModule(SegmentationDataModule):
    """Image/mask pairs in folders, e.g. a Roboflow "Semantic Segmentation Masks" export.

    Args:
        train_dir, val_dir, test_dir: folders of images (and masks, unless ``mask_dir`` is
            set); ``test_dir`` defaults to ``val_dir``.
        mask_suffix: a mask's name is its image's stem plus this, e.g. ``_mask.png``.
        mask_dir_name: masks in a sibling folder of each split folder instead
            (e.g. ``masks`` for ``train/images`` + ``train/masks``); default the same folder.
        num_classes: classes incl. background; read from ``train_dir/_classes.csv`` if omitted.
        class_names: names by class index; also read from ``_classes.csv`` if present.
        **kwargs: see :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        test_dir: str | None = None,
        mask_suffix: str = "_mask.png",
        mask_dir_name: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        table = Path(train_dir).expanduser() / "_classes.csv"
        if class_names is None and table.is_file():
            class_names = read_classes_csv(table)
        if num_classes is None:
            if class_names is None:
                raise DataError(
                    f"num_classes is not given and {table} does not exist; set "
                    "--data.num_classes N (classes including background)."
                )
            num_classes = len(class_names)
        super().__init__(num_classes=num_classes, class_names=class_names, **kwargs)
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir or val_dir}
        self.mask_suffix = mask_suffix
        self.mask_dir_name = mask_dir_name

    def samples(self, split: str) -> list[Sample]:
        image_dir = Path(self.dirs[split]).expanduser()
        mask_dir = image_dir.parent / self.mask_dir_name if self.mask_dir_name else None
        return folder_samples(image_dir, mask_dir, self.mask_suffix)
