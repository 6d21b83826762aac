"""Image classification data: image folders (ImageNet layout) and CIFAR-10.

* **Image folders** (``ImageFolderDataModule``), one sub-folder per class::

      ROOT/train/<class>/<any name>.<jpg|png|...>
      ROOT/val/<class>/...

  Class indices follow the sorted names of ``ROOT/train``'s sub-folders (torchvision's
  ImageFolder order). Files that are not images are reported and skipped; files that cannot be
  decoded are reported by path and, per ``on_bad_image``, stop the run or are skipped with a
  count. Grayscale, palette, RGBA and 16-bit images become 8-bit RGB.

* **CIFAR-10** (``CIFAR10DataModule``): the python-pickle folder of the standard download
  (``cifar-10-batches-py/data_batch_1..5, test_batch``).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data import default_collate as _default_collate

from vtk.data import transforms as T
from vtk.data.base import ImageFileDataset, VisionDataModule, split_source
from vtk.data.io import IMAGE_SUFFIXES, is_image_file
from vtk.drawing import draw_classes
from vtk.errors import ConfigError, DataError
from vtk.spec import CIFAR10_MEAN, CIFAR10_STD, InputSpec

log = logging.getLogger("vtk")


@dataclass(frozen=True)
class ImageSample:
    id: str
    path: Path
    label: int = -1  # -1: unlabelled (prediction)


def image_folder_samples(
    root: str | Path, class_names: Sequence[str] | None = None
) -> list[ImageSample]:
    """Samples of a one-folder-per-class tree; ``class_names`` fixes the class order (a val
    split uses the train split's classes)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; it needs one sub-folder per class.")
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not found:
        raise DataError(
            f"{root} has no class sub-folders; put each class's images in ROOT/<class>/."
        )
    classes = list(class_names) if class_names is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{root} has folders {unknown[:5]} that are not classes of the training split "
            f"({len(classes)} classes); rename or remove them."
        )
    samples, others = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                if is_image_file(p):
                    samples.append(
                        ImageSample(p.relative_to(root).with_suffix("").as_posix(), p, label)
                    )
                elif not p.name.startswith("."):
                    others.append(p)
    if others:
        log.warning(
            "skipping %d files that are not images (%s) in %s: %s",
            len(others), ", ".join(IMAGE_SUFFIXES), root, [str(p) for p in others[:5]],
        )  # fmt: skip
    held = {s.label for s in samples}
    empty = [name for label, name in enumerate(classes) if label not in held]
    if empty and samples:
        log.warning(
            "%d class folders of %s hold no images: %s. They stay classes (the training split "
            "names them), but this split has none of them.", len(empty), root, empty[:10],
        )  # fmt: skip
    if not samples:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}.")
    return samples


def unreadable(samples: Sequence[ImageSample]) -> list[tuple[ImageSample, str]]:
    """The samples whose file header PIL cannot read (not an image, truncated header)."""
    bad = []
    for s in samples:
        try:
            with Image.open(s.path) as img:
                img.size  # noqa: B018 - parsing the header is the check
        except (OSError, ValueError) as e:
            bad.append((s, str(e)))
    return bad


class ClassificationDataset(ImageFileDataset):
    """Image files with their labels: ``{"image", "label", "id", "path"}``.

    With ``on_bad_image="skip"``, an image that fails to decode is logged by path and left out
    of its batch (the batch is one image shorter) instead of stopping the run.
    """

    def item(self, sample: ImageSample, image: np.ndarray) -> dict[str, Any]:
        return {
            "image": self.transform(image=image)["image"],
            "label": sample.label,
            "id": sample.id,
            "path": str(sample.path),
        }


class ArrayDataset(Dataset):
    """In-memory ``(N, H, W, 3)`` uint8 images with labels (CIFAR)."""

    def __init__(
        self, images: np.ndarray, labels: Sequence[int], transform: Any, prefix: str
    ) -> None:
        self.images, self.labels, self.transform, self.prefix = (
            images,
            list(labels),
            transform,
            prefix,
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.transform(image=self.images[index])["image"]
        return {
            "image": image,
            "label": self.labels[index],
            "id": f"{self.prefix}_{index:05d}",
            "path": "",
        }


def collate(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack a batch, leaving out images that could not be decoded (``None``)."""
    kept = [b for b in batch if b is not None]
    return _default_collate(kept) if kept else None


class ClassificationDataModule(VisionDataModule):
    """Loaders, augmentation and ``num_classes`` for image classification.

    Subclasses build each split's dataset (:meth:`make_dataset`).

    Args:
        num_classes: classes (linked to the model by ``vtk``).
        class_names: one name per class, for metrics, CSV predictions and drawings.
        image_size: training crop and evaluation centre crop (224 for ImageNet).
        resize_size: evaluation resize of the shorter side (default image_size / 0.875).
        scale: random-resized-crop area range (torchvision's 0.08-1.0).
        mean, std: normalisation of RGB in [0, 1]; by default what the network's weights were
            trained with (torchvision's weights enum, timm's ``pretrained_cfg``, a vtk weights
            card: the ``vtk`` command hands them over), else ImageNet's.
        batch_size: images per process and step (per GPU under DDP).
        auto_augment: a policy after the crop and flip, as torchvision's reference
            ``--auto-augment``: ``ra`` (RandAugment), ``ta_wide`` (TrivialAugmentWide),
            ``augmix``, ``imagenet`` (AutoAugment); torchvision.transforms.v2's. None: none.
        ra_magnitude: RandAugment's magnitude (9, as the reference).
        random_erase: probability of random erasing of the normalised image (the reference's
            ``--random-erase``; 0.1 in its recipe for the newer ImageNet weights).
        mixup_alpha, cutmix_alpha: batch-level MixUp / CutMix (Beta(alpha, alpha) mixing, as the
            reference's ``--mixup-alpha 0.2 --cutmix-alpha 1.0``; one of the two per batch when
            both are set, torchvision.transforms.v2's): the training labels become soft targets
            (N, classes) that the task's cross-entropy takes. 0: off.
        **kwargs: see :class:`~vtk.data.base.VisionDataModule` (``val_batch_size``,
            ``num_workers``, ``on_bad_image``, ``predict_dir``).
    """

    collate_fn = staticmethod(collate)
    streams = True

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        image_size: int = 224,
        resize_size: int | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        batch_size: int = 32,
        auto_augment: str | None = None,
        ra_magnitude: int = 9,
        random_erase: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, class_names, batch_size=batch_size, **kwargs)
        self.image_size, self.resize_size, self.scale = image_size, resize_size, scale
        self.init_normalisation(mean, std)
        if auto_augment is not None and auto_augment not in T.AUTO_AUGMENT:
            raise ConfigError(
                f"auto_augment is one of {', '.join(T.AUTO_AUGMENT)} (or null), not "
                f"{auto_augment!r}."
            )
        for name, value in (("random_erase", random_erase), ("mixup_alpha", mixup_alpha),
                            ("cutmix_alpha", cutmix_alpha)):  # fmt: skip
            if value < 0 or (name == "random_erase" and value > 1):
                raise ConfigError(
                    f"{name} must be {'in [0, 1]' if name == 'random_erase' else '>= 0'}, got {value}."
                )
        self.auto_augment, self.ra_magnitude, self.random_erase = (
            auto_augment, ra_magnitude, random_erase,
        )  # fmt: skip
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self._mix: Any = None

    def train_transform(self) -> Any:
        return T.classification_train(
            self.image_size, self.scale, mean=self.mean, std=self.std,
            auto_augment=self.auto_augment, ra_magnitude=self.ra_magnitude,
            random_erase=self.random_erase,
        )  # fmt: skip

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """MixUp / CutMix of a training batch, on its device (``mixup_alpha``,
        ``cutmix_alpha``): the labels become soft targets."""
        if batch is None or not (self.mixup_alpha or self.cutmix_alpha):
            return batch
        if self.trainer is None or not self.trainer.training:
            return batch
        if self._mix is None:
            from torchvision.transforms import v2

            mixes = [m(alpha=a, num_classes=self.num_classes) for m, a in
                     ((v2.MixUp, self.mixup_alpha), (v2.CutMix, self.cutmix_alpha)) if a > 0]  # fmt: skip
            self._mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
        images, labels = self._mix(batch["image"], batch["label"])
        return {**batch, "image": images, "label": labels}

    def eval_spec(self) -> InputSpec:
        # resize the shorter side (256 for 224: torchvision's ratio 0.875), centre crop
        resize = self.resize_size or round(self.image_size / 0.875)
        return InputSpec(self.mean, self.std, resize=resize, crop=self.image_size)

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        image = T.to_uint8(item["image"], self.eval_spec())
        return draw_classes(image, [self.class_names[item["label"]]], [1.0])

    def files_dataset(self, samples: list[ImageSample], split: str, where: str) -> Dataset:
        """A dataset of image files, after checking every file's header once (a stream's
        were checked when it was written)."""
        bad = [] if self.stream is not None else unreadable(samples)
        if bad:
            listing = "; ".join(f"{s.path} ({err})" for s, err in bad[:3])
            if self.on_bad_image == "error":
                raise DataError(
                    f"{len(bad)} files in {where} cannot be read as images: {listing}. Remove them, "
                    "or set on_bad_image: skip."
                )
            log.warning(
                "skipping %d files in %s that cannot be read as images: %s", len(bad), where,
                listing,
            )  # fmt: skip
            bad_paths = {s.path for s, _ in bad}
            samples = [s for s in samples if s.path not in bad_paths]
        return ClassificationDataset(samples, self.transform(split), self.on_bad_image)


class ImageFolderDataModule(ClassificationDataModule):
    """One folder per class, per split (ImageNet's layout after the usual val preparation).

    Args:
        root: the folder holding the split folders.
        train_split, val_split, test_split: their names under ``root``; no test split unless
            given (``vtk test`` then stops; ``test_split: val`` evaluates the validation
            images, and says so).
        **kwargs: see :class:`ClassificationDataModule` (``num_classes`` and ``class_names``
            come from the train split's folders).
    """

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.root = Path(root).expanduser()
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        if kwargs.get("stream") is not None:  # the stream holds the classes and the samples
            self.stream, self.stream_cache = kwargs["stream"], kwargs.get("stream_cache")
            self.stream_options = kwargs.get("stream_options")
            names = self.stream_facts()["class_names"]
        else:
            names = self._class_folders(train_split, val_split, test_split)
        super().__init__(num_classes=len(names), class_names=names, **kwargs)

    def _class_folders(self, train: str, val: str, test: str | None) -> list[str]:
        """The class names of the training folder; a class without images anywhere stops."""
        names = class_folders(self.root / train)
        splits = [s for s in dict.fromkeys((train, val, test)) if s]
        never = [n for n in names if not any(_has_images(self.root / s / n) for s in splits)]
        if never:
            raise DataError(
                f"class folders {never[:10]} hold no images in any split ({', '.join(splits)} "
                f"under {self.root}): each would be a class the model never sees. Add its "
                "images, or remove the empty folders."
            )
        return names

    test_option = "--data.test_split NAME (a split folder under root)"
    classes_from = "the class sub-folders of the training folder (ROOT/train/<class>/)"

    def test_source(self) -> str | None:
        return split_source(self.splits)

    def make_dataset(self, split: str) -> Dataset:
        samples = self.carve(
            split, lambda s: image_folder_samples(self.root / self.splits[s], self.class_names),
            key=lambda sample: str(sample.path), label=lambda sample: sample.label,
        )  # fmt: skip
        source = "train" if self.fractions.get(split) else split
        return self.files_dataset(samples, split, str(self.root / self.splits[source]))


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() and is_image_file(p) for p in folder.rglob("*"))


def class_folders(train: Path) -> list[str]:
    """The class names of a training folder: its sub-folders, sorted (torchvision's order)."""
    if not train.is_dir():
        raise DataError(
            f"training folder {train} does not exist; the data root must hold one folder per "
            "split (train/, val/) with one sub-folder per class (--data.root ROOT)."
        )
    names = sorted(d.name for d in train.iterdir() if d.is_dir())
    if not names:
        raise DataError(
            f"{train} has no class sub-folders; put each class's images in {train}/<class>/."
        )
    return names


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_HOWTO = (
    "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it, then pass "
    "the cifar-10-batches-py folder: --data.root PATH/cifar-10-batches-py"
)


def read_cifar10(root: str | Path, train: bool) -> tuple[np.ndarray, list[int]]:
    """CIFAR-10 from the python-pickle release: ``(N, 32, 32, 3)`` uint8 images and labels."""
    root = Path(root).expanduser()
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 file {path} does not exist. {CIFAR10_HOWTO}")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            images.append(data.transpose(0, 2, 3, 1))
            labels += [int(v) for v in batch[b"labels"]]
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
            raise DataError(
                f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}). {CIFAR10_HOWTO}"
            ) from None
    return np.concatenate(images), labels


class CIFAR10DataModule(ClassificationDataModule):
    """CIFAR-10 with the ResNet paper's augmentation (pad 4, random 32x32 crop, flip).

    ``train`` is the 50,000 training images, ``val`` and ``test`` the 10,000 test images (the
    split the ResNet paper reports, §4.2).
    """

    streams = False  # images in memory, not files

    def __init__(
        self,
        root: str = "data/cifar-10-batches-py",
        mean: tuple[float, float, float] = CIFAR10_MEAN,
        std: tuple[float, float, float] = CIFAR10_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes=10, class_names=CIFAR10_CLASSES, image_size=32, mean=mean, std=std, **kwargs
        )
        self.root = root

    def train_transform(self) -> Any:
        return T.cifar_train(self.mean, self.std)

    def eval_spec(self) -> InputSpec:
        # the 32x32 images as they are; another image (prediction) is resized and cropped to 32
        return InputSpec(self.mean, self.std, resize=32, crop=32)

    classes_from = "CIFAR-10 itself (10 classes)"

    def test_source(self) -> str:
        return "the 10,000 test images, which are also the validation split (the ResNet paper's)"

    def make_dataset(self, split: str) -> Dataset:
        images, labels = read_cifar10(self.root, train=split == "train")
        prefix = "train" if split == "train" else "test"
        return ArrayDataset(images, labels, self.transform(split), prefix=prefix)
