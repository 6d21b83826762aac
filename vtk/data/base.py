"""What every vtk DataModule shares: the splits, the loaders, the prediction folder, the class
list and the bad-image policy.

A DataModule says once what its data is, and the ``vtk`` command links each to the task:
``num_classes`` (to the network), ``class_names``, ``category_ids`` (the dataset's own id of
each class, for results files), ``ignore_index`` (segmentation's unscored label) and
``input_spec`` (how an image is prepared for evaluation: normalisation, resize / crop /
padding; see :class:`~vtk.spec.InputSpec`).

A task's DataModule keeps only what differs: :meth:`VisionDataModule.make_dataset` (one
split), :meth:`~VisionDataModule.train_transform`, :meth:`~VisionDataModule.eval_spec` and
:meth:`~VisionDataModule.draw_sample`.

Prediction is the same for every task: every image file of ``predict_dir`` through the
evaluation pipeline, in batches ``{"image": [(3, H, W) tensors], "id": [file stems],
"path": [...], "size": [(height, width) on disk]}``; files that are not images are listed and
skipped, images that cannot be decoded are reported by path and the rest go on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vtk._compat import batches_trained_this_epoch
from vtk.data.datasets import (  # (re-exported: their long-standing import path)
    ImageFileDataset as ImageFileDataset,
)
from vtk.data.datasets import (
    OnBadImage,
    PredictDataset,
    list_collate,
    list_images,
)
from vtk.data.datasets import load_image as load_image
from vtk.data.datasets import predict_item as predict_item
from vtk.data.loading import make_loader
from vtk.data.splits import seeded_roles
from vtk.data.transforms import eval_transform
from vtk.errors import ConfigError, DataError
from vtk.spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec

log = logging.getLogger("vtk")

#: The splits each Lightning stage sets up.
STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}

#: the images of each split whose EXIF tags are read at setup (headers only)
ORIENTATION_SAMPLE = 2000


def resolve_class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """``class_names`` checked against ``num_classes``; "0", "1", ... when there are none."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ConfigError(
            f"{len(class_names)} class names for num_classes={num_classes}; give one name per "
            "class (background included for segmentation)."
        )
    return [str(n) for n in class_names]


def split_source(splits: dict[str, str | None]) -> str | None:
    """:meth:`VisionDataModule.test_source` of data whose splits are named."""
    if splits["test"] is None:
        return None
    if splits["test"] == splits["val"]:
        return f"the validation split ({splits['val']}), as test_split says"
    return ""


class VisionDataModule(LightningDataModule):
    """Base of the vtk DataModules.

    Args:
        num_classes: classes (linked to the network by ``vtk``).
        class_names: one name per class (default "0", "1", ...).
        category_ids: the dataset's own id of each class (COCO's category ids), written into
            results files; default none (class indices).
        batch_size: images per process and step (per GPU under DDP).
        val_batch_size: images per evaluation step (default ``batch_size``).
        num_workers: loader worker processes per GPU.
        on_bad_image: "error" stops at an image that cannot be decoded (naming it); "skip"
            leaves it out and logs its path. Prediction always skips and reports.
        predict_dir: folder of images for ``vtk predict``.
        val_fraction, test_fraction: carve the validation (and test) split out of the training
            split instead of reading one: for a single folder, COCO file or YOLO list. Seeded
            (``split_seed``), stratified by class for classification (by image for detection
            and segmentation); the lists are logged with their counts, written to
            ``data_split.json`` in the run folder and kept in the checkpoint, so a resumed run
            and ``vtk test`` of its checkpoint see the same images.
        split_seed: the seed of that split.
        exif_orientation: ``apply`` (default): images stored sideways with an EXIF orientation
            tag are turned upright, as viewers, OpenCV and annotation tools (CVAT, Roboflow,
            LabelMe) show them, and their masks and boxes are taken to be drawn on the upright
            image; ``ignore``: the stored pixels, for labels made by a tool that ignored the tag.
            Masks are read as stored either way. Sizes cannot tell the two apart for 180-degree turns,
            mirrors or square photos: the data's setup counts the tagged images and says which
            convention is in force.
        stream: read the splits from a stream that ``vtk optimize`` wrote (a folder, or an
            object store's URL such as ``s3://bucket/prefix``) instead of the files the other
            options name (see :mod:`vtk.data.stream`); augmentation, sampling and evaluation
            are the same.
        stream_options: LitData's ``storage_options`` for the stream (e.g. ``{endpoint_url:
            http://minio:9000}``; credentials come from the environment, as for boto3).
        stream_cache: the local folder LitData caches a remote stream's chunks in (default
            LitData's).
    """

    #: whether :mod:`vtk.data.stream` can write and read this DataModule's samples
    streams: bool = False
    #: stacks a list of samples of a split (train, val, test) into a batch (see :meth:`collate`)
    collate_fn: Callable[[list[Any]], Any]
    #: refuse a training split smaller than one batch (a partial batch of one breaks BatchNorm)
    full_train_batch: bool = True

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        on_bad_image: OnBadImage = "error",
        predict_dir: str | None = None,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        split_seed: int = 0,
        exif_orientation: Literal["apply", "ignore"] = "apply",
        stream: str | None = None,
        stream_options: dict[str, Any] | None = None,
        stream_cache: str | None = None,
    ) -> None:
        super().__init__()
        if stream is not None and not self.streams:
            raise DataError(
                f"{type(self).__name__} does not stream (data.stream): its images are not "
                "files. Streaming covers the data read from image files: segmentation, "
                "detection, classification and multi-label."
            )
        self.stream, self.stream_options, self.stream_cache = stream, stream_options, stream_cache
        self._stream_chunks: dict[str, Any] = {}  # split -> each streamed sample's chunk
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if value is not None and not 0.0 < value < 1.0:
                raise DataError(f"{name} is a share of the training images in (0, 1), got {value}.")
        if (val_fraction or 0.0) + (test_fraction or 0.0) >= 1.0:
            raise DataError("val_fraction + test_fraction leave no training images.")
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed = split_seed
        if exif_orientation not in ("apply", "ignore"):
            raise DataError(f"exif_orientation is apply or ignore, got {exif_orientation!r}.")
        self.exif = exif_orientation == "apply"
        self._assignment: dict[str, str] | None = None  # item key -> train / val / test
        #: (epoch, batches trained) of the checkpoint this run resumes, for the next train loader
        self._train_position: tuple[int, int] | None = None
        if num_classes < 1:
            raise DataError(f"num_classes must be at least 1, got {num_classes}.")
        try:
            self.class_names = resolve_class_names(num_classes, class_names)
        except ConfigError as e:
            raise DataError(str(e)) from None
        if category_ids is not None and len(category_ids) != num_classes:
            raise DataError(f"{len(category_ids)} category_ids for num_classes={num_classes}.")
        self.num_classes = num_classes
        self.category_ids = None if category_ids is None else [int(i) for i in category_ids]
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.on_bad_image = on_bad_image
        self.predict_dir = predict_dir
        self.datasets: dict[str, Any] = {}

    # -- what a task's DataModule says ----------------------------------------------------------
    def eval_spec(self) -> InputSpec:
        """How images are prepared for evaluation and prediction."""
        raise NotImplementedError

    def train_transform(self) -> Any:
        """The training augmentation pipeline."""
        raise NotImplementedError

    def make_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` ("train", "val" or "test"), with :meth:`transform`."""
        raise NotImplementedError

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        """A sample of :meth:`make_dataset` drawn as a ``(3, H, W)`` uint8 image (for browsing)."""
        raise NotImplementedError

    # -- normalisation --------------------------------------------------------------------------
    def init_normalisation(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        """``mean`` / ``std`` as given; None: what the network's weights were trained with (the
        ``vtk`` command hands them over: :meth:`adopt_normalisation`), else vtk's default
        (ImageNet's, :mod:`vtk.spec`)."""
        self.normalisation_given = mean is not None or std is not None
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD

    def adopt_normalisation(
        self, norm: tuple[Sequence[float], Sequence[float]], source: str
    ) -> bool:
        """Normalise as ``norm`` (mean, std) says, from ``source`` (the backbone's weights, a
        checkpoint), unless this data gives its own (then a differing ``norm`` is a warning).
        True when the normalisation changed. Data that does not normalise (detection: the
        detector does) keeps nothing."""
        if not hasattr(self, "normalisation_given"):
            return False
        mean, std = tuple(float(v) for v in norm[0]), tuple(float(v) for v in norm[1])
        if (mean, std) == (tuple(self.mean), tuple(self.std)):
            return False
        if self.normalisation_given:
            log.warning(
                "the data normalises with mean %s, std %s (its mean/std) but %s says mean %s, "
                "std %s: the data's are used. Leave mean/std out to take %s.",
                list(self.mean), list(self.std), source, list(mean), list(std), source,
            )  # fmt: skip
            return False
        self.mean, self.std = mean, std
        for split, dataset in self.datasets.items():  # (when set up already)
            if split != "predict" and hasattr(dataset, "transform"):
                dataset.transform = self.transform(split)
        log.info("the data normalises as %s: mean %s, std %s", source, list(mean), list(std))
        return True

    # -- shared ---------------------------------------------------------------------------------
    @property
    def input_spec(self) -> dict[str, Any]:
        """:meth:`eval_spec` as plain values: what the task keeps in its checkpoint."""
        return self.eval_spec().to_dict()

    def transform(self, split: str) -> Any:
        return self.train_transform() if split == "train" else self.eval_transform()

    def eval_transform(self) -> Any:
        """The evaluation pipeline of :meth:`eval_spec`."""
        return eval_transform(self.eval_spec())

    #: how a user gives this DataModule a test split (named when ``vtk test`` finds none)
    test_option: str = ""
    #: where the classes come from when the DataModule takes no ``num_classes`` (a
    #: ``--data.num_classes`` is then answered with this, not the parser's usage text)
    classes_from: str | None = None

    def test_source(self) -> str | None:
        """What ``vtk test`` evaluates: ``""`` the data's own test split, a description when
        that is the validation images (logged), None when there is no test split (``vtk test``
        stops and names :attr:`test_option`)."""
        return ""

    def check_test_split(self) -> None:
        """Stop ``vtk test`` on data without a test split rather than evaluate the validation
        images under the test metrics' names; log it when the test split *is* the validation
        split, as asked."""
        source = "" if self.fractions["test"] else self.test_source()
        if source is None:
            raise DataError(
                f"{type(self).__name__} has no test split, so vtk test has nothing held out "
                f"to evaluate: give one with {self.test_option}. To evaluate the validation "
                "images, give theirs (the metrics are then named test/ but measure val), or "
                "run vtk validate."
            )
        if source:
            log.info("vtk test evaluates %s", source)

    # -- val_fraction / test_fraction ---------------------------------------------------------
    def carve(
        self,
        split: str,
        items_of: Callable[[str], list[Any]],
        key: Callable[[Any], str],
        label: Callable[[Any], int] | None = None,
    ) -> list[Any]:
        """The items of ``split``: ``items_of(split)``, or its share of the training split's
        items when ``val_fraction`` / ``test_fraction`` carve it out (see the class docs).
        ``key`` names an item (its file), ``label`` its class (stratified when given).
        Reading a stream (``stream``), the items are the stream's, as written."""
        if self.stream is not None:
            return self.streamed_samples(split)
        carved = split in ("val", "test") and self.fractions[split] is not None
        if not (carved or (split == "train" and any(self.fractions.values()))):
            return items_of(split)
        items = items_of("train")
        if self._assignment is None:
            self._assignment = self._assign(items, key, label)
        known = [it for it in items if key(it) in self._assignment]
        if len(known) < len(items) and split == "train":
            log.info(
                "%d training images are not in the checkpoint's data split (added since): "
                "they train", len(items) - len(known),
            )  # fmt: skip
        return [it for it in items if self._assignment.get(key(it), "train") == split]

    def stream_facts(self) -> dict[str, Any]:
        """What the stream says about the data (``num_classes``, ``class_names``,
        ``category_ids``), for DataModules that read them from their files otherwise."""
        from vtk.data.stream import stream_facts

        assert self.stream is not None
        return stream_facts(self.stream, self.stream_cache, self.stream_options)

    def streamed_samples(self, split: str) -> list[Any]:
        """The samples of ``split`` in the stream, checked against this DataModule's classes."""
        from vtk.data.stream import read_split

        assert self.stream is not None
        samples, meta = read_split(self.stream, split, self.stream_cache, self.stream_options)
        mine = {"num_classes": self.num_classes, "class_names": self.class_names}
        theirs = {k: meta[k] for k in mine}
        if mine != theirs:
            raise DataError(
                f"the stream {self.stream} was written with {theirs['num_classes']} classes "
                f"({', '.join(theirs['class_names'][:8])}, ...) but this recipe has "
                f"{self.num_classes} ({', '.join(self.class_names[:8])}, ...): a model would "
                "learn the wrong labels. Write the stream from this recipe, or fix its classes."
            )
        log.info("the %s split: %d samples from the stream %s", split, len(samples), self.stream)
        self._stream_chunks[split] = meta["chunks"]
        return samples

    def _assign(
        self, items: list[Any], key: Callable[[Any], str], label: Callable[[Any], int] | None
    ) -> dict[str, str]:
        import random

        groups: dict[int, list[str]] = {}
        for it in items:
            groups.setdefault(label(it) if label is not None else 0, []).append(key(it))
        rng = random.Random(self.split_seed)
        out: dict[str, str] = {}
        for g in sorted(groups):  # stratified: each class split by the same fractions
            out.update(seeded_roles(groups[g], self.fractions["val"], self.fractions["test"], rng))
        for role in ("val", "test"):
            if self.fractions[role] and role not in out.values():
                raise DataError(
                    f"{role}_fraction={self.fractions[role]} of {len(items)} training images "
                    f"is no image; raise it (or give a {role} split)."
                )
        counts = {role: sum(v == role for v in out.values()) for role in ("train", "val", "test")}
        if label is not None:
            per_class = {
                role: [sum(out[key(it)] == role for it in items if label(it) == c)
                       for c in range(self.num_classes)]
                for role in counts if counts[role]
            }  # fmt: skip
            detail = "; ".join(
                f"{role} " + ", ".join(f"{n} {self.class_names[c]}" for c, n in enumerate(row))
                for role, row in per_class.items()
            )
        else:
            detail = ", ".join(f"{n} {role}" for role, n in counts.items() if n)
        log.info(
            "data split (val_fraction %s, test_fraction %s, seed %d) of %d training images: %s",
            self.fractions["val"], self.fractions["test"], self.split_seed, len(items), detail,
        )  # fmt: skip
        self._write_split(out)
        return out

    def _write_split(self, assignment: dict[str, str]) -> None:
        # the run folder of the logger (not trainer.log_dir: it broadcasts, and without a logger
        # it is the current folder, where a ``vtk test RECIPE`` would leave the file)
        trainer = self.trainer
        logger = trainer.logger if trainer is not None else None
        log_dir = getattr(logger, "log_dir", None)
        if trainer is None or not trainer.is_global_zero or log_dir is None:
            return
        folder = Path(log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        lists = {role: sorted(k for k, v in assignment.items() if v == role)
                 for role in ("train", "val", "test")}  # fmt: skip
        (folder / "data_split.json").write_text(
            json.dumps({"seed": self.split_seed, "fractions": self.fractions, **lists}, indent=1)
        )

    def state_dict(self) -> dict[str, Any]:
        """Kept in every checkpoint: the carved split, when there is one, and, while fitting,
        where the training epoch stood (its epoch and the batches trained on)."""
        state: dict[str, Any] = {"assignment": self._assignment} if self._assignment else {}
        trainer = self.trainer
        if trainer is not None and trainer.state.fn == "fit":
            state["train_position"] = list(batches_trained_this_epoch(trainer))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint's carved split replaces a freshly drawn one (resume, ``vtk test``); its
        training position makes the next training loader start after the batches the run had
        trained on. (The loader's own state, which Lightning also saves, is loaded back only
        when the loader is first built after the restore: an epoch-based run builds it before,
        to count its steps for the LR schedule.)"""
        position = state.get("train_position")
        self._train_position = tuple(position) if position else None
        saved = state.get("assignment")
        if not saved or saved == self._assignment or not any(self.fractions.values()):
            return
        self._assignment = dict(saved)
        for split in [s for s in self.datasets if s != "predict"]:
            self.datasets[split] = self.make_dataset(split)
        log.info("the data split is the checkpoint's (%d images)", len(saved))

    def setup(self, stage: str) -> None:
        if stage == "test":
            self.check_test_split()
        for split in STAGE_SPLITS[stage]:
            self.datasets[split] = (
                self.predict_dataset() if split == "predict" else self.make_dataset(split)
            )
            if split != "predict" and hasattr(self.datasets[split], "exif"):
                self.datasets[split].exif = self.exif
        if self.stream is None:  # a stream's images were counted when it was written
            self.report_orientation([s for s in STAGE_SPLITS[stage] if s != "predict"])

    def image_files(self, split: str) -> list[Path]:
        """The image files of a split that is set up (for :meth:`report_orientation`)."""
        dataset = self.datasets.get(split)
        samples = getattr(dataset, "samples", None) or []
        if not hasattr(dataset, "image_path"):  # images in memory (CIFAR): no files
            return []
        return [Path(dataset.image_path(s)) for s in samples[:ORIENTATION_SAMPLE]]

    def report_orientation(self, splits: Sequence[str]) -> None:
        """Say how many images (of the first :data:`ORIENTATION_SAMPLE` of each split) carry an
        EXIF orientation, and which convention their labels are read in: sizes cannot tell
        when the labels were drawn on the stored pixels of a photo turned by 180 degrees,
        mirrored, or square."""
        from vtk.data.io import exif_orientation

        tagged: dict[int, list[str]] = {}
        for split in splits:
            for path in dict.fromkeys(self.image_files(split)):
                tag = exif_orientation(path)
                if tag != 1:
                    tagged.setdefault(tag, []).append(path.name)
        if not tagged or (self.trainer is not None and not self.trainer.is_global_zero):
            return
        n = sum(len(v) for v in tagged.values())
        kinds = ", ".join(f"{len(v)} with orientation {k}" for k, v in sorted(tagged.items()))
        example = next(iter(tagged.values()))[0]
        if self.exif:
            log.warning(
                "%d images carry an EXIF orientation (%s; e.g. %s): they are turned upright, as "
                "viewers and annotation tools (CVAT, Roboflow, LabelMe) show them, and their labels "
                "are taken to be drawn on the upright image. If a tool drew them on the stored "
                "pixels, set exif_orientation: ignore (--data.exif_orientation ignore).",
                n, kinds, example,
            )  # fmt: skip
        else:
            log.warning(
                "%d images carry an EXIF orientation (%s; e.g. %s): exif_orientation: ignore reads "
                "their stored pixels, as their labels are taken to be drawn on them.",
                n, kinds, example,
            )  # fmt: skip

    def predict_dataset(self) -> PredictDataset:
        if self.predict_dir is None:
            raise DataError("vtk predict needs a folder of images: --data.predict_dir DIR")
        return PredictDataset(list_images(self.predict_dir), self.eval_transform())

    def _loader(self, split: str, batch_size: int, train: bool = False) -> DataLoader:
        dataset: Any = self.datasets[split]
        if train and self.full_train_batch and len(dataset) < batch_size:
            raise DataError(
                f"the {split} split has {len(dataset)} images, fewer than batch_size={batch_size}."
            )
        options = self.train_sampler_options(dataset) if train else None
        chunks = self._stream_chunks.get(split)
        if options is not None and chunks is not None and len(chunks) == len(dataset):
            options = {"chunks": chunks, **options}  # a stream: read chunk by chunk
        return make_loader(
            self, dataset, batch_size, train, self.num_workers, self.collate(split),
            split in ("train", "val"), options,
        )  # fmt: skip

    def train_sampler_options(self, dataset: Any) -> dict[str, Any]:
        """Options of the training :class:`~vtk.data.loading.TrainSampler` (``groups``,
        ``repeat_factors``) for ``dataset``; none by default."""
        return {}

    def collate(self, split: str) -> Callable[[list[Any]], Any]:
        """How the samples of ``split`` become a batch: :attr:`collate_fn`, and lists for
        prediction (the one batch schema of every task's ``predict_step``)."""
        return list_collate if split == "predict" else self.collate_fn

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        # images are prepared as the task predicting them says (its checkpoint's input spec:
        # the run's own normalisation and size), which may differ from this data's
        task = self.trainer.lightning_module if self.trainer is not None else None
        spec = getattr(task, "input_spec", None)
        if isinstance(spec, InputSpec) and spec != self.eval_spec():
            log.info("prediction prepares images with the checkpoint's input spec: %s", spec)
            self.datasets["predict"].transform = eval_transform(spec)
        return self._loader("predict", self.val_batch_size)


class PredictFolderDataModule(VisionDataModule):
    """Only a folder of images to predict, with what a checkpoint says about its classes and
    input: what ``vtk predict CHECKPOINT --data.predict_dir DIR`` builds, so no training data
    (annotation files, mask folders) is needed to predict.

    Args:
        predict_dir: the folder of images.
        num_classes, class_names, category_ids, ignore_index: the checkpoint's.
        input_spec: the checkpoint's (:class:`~vtk.spec.InputSpec` as a dict).
        batch_size, num_workers: as for every DataModule.
    """

    collate_fn = staticmethod(list_collate)

    def __init__(
        self,
        predict_dir: str,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        input_spec: dict[str, Any] | None = None,
        ignore_index: int | None = None,
        batch_size: int = 8,
        num_workers: int = 2,
    ) -> None:
        super().__init__(
            num_classes, class_names, category_ids, batch_size=batch_size,
            num_workers=num_workers, predict_dir=predict_dir,
        )  # fmt: skip
        self.ignore_index = ignore_index
        self._spec = InputSpec.from_dict(input_spec) if input_spec else InputSpec()

    def eval_spec(self) -> InputSpec:
        return self._spec

    def make_dataset(self, split: str) -> Dataset:
        raise DataError(
            f"this DataModule only predicts (no {split} data): give the recipe to fit or test."
        )
