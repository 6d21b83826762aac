"""Object detection data in COCO format: an annotation JSON and a folder of images.

The JSON is checked before pycocotools indexes it, and the cases real files have are handled
and reported once per split, not silently:

* category ids that are not contiguous, or start at 0: classes are the categories sorted by
  id, labels 0..K-1; predictions are written back with the original ids;
* categories that no annotation uses: kept as classes, listed;
* images without annotations: kept as negatives (``keep_empty``), counted;
* ``iscrowd`` regions: left out of the loss, passed to the evaluation (as COCO does);
* boxes that leave the image: clipped, counted; boxes with no area: dropped, counted;
* an annotation whose category or image does not exist, an image file that is missing, an
  image whose size differs from the JSON: an error naming the annotation / image id and file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vtk.data import transforms as T
from vtk.data.base import ImageFileDataset, VisionDataModule, list_collate
from vtk.data.io import SWAPPING_ORIENTATIONS, exif_orientation, image_source, upright_size
from vtk.drawing import draw_detections
from vtk.errors import DataError
from vtk.spec import InputSpec

log = logging.getLogger("vtk")


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Read and check a COCO annotation file; returns its dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist; check the path in the recipe.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a COCO annotation file: the top level is not an object.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(
                f"{path} is not a COCO annotation file: it has no {key!r} list (a COCO file has "
                "'images', 'annotations' and 'categories'). Convert VOC XML or YOLO labels with vtk convert."
            )
    for what, required in (("images", ("id", "file_name")), ("categories", ("id", "name")),
                           ("annotations", ("id", "image_id", "category_id", "bbox"))):  # fmt: skip
        for i, item in enumerate(data[what]):
            missing = [k for k in required if k not in item]
            if missing:
                raise DataError(
                    f"{path}: {what}[{i}] has no {missing[0]!r} (id {item.get('id', '?')})."
                )
    categories = {c["id"] for c in data["categories"]}
    images = {im["id"] for im in data["images"]}
    if len(images) != len(data["images"]):
        seen: set = set()
        twice = next(im["id"] for im in data["images"] if im["id"] in seen or seen.add(im["id"]))
        raise DataError(
            f"{path}: image id {twice} is given to more than one image; each image needs its own id."
        )
    ann_ids = [a["id"] for a in data["annotations"]]
    if 0 in ann_ids or len(set(ann_ids)) != len(ann_ids):
        # pycocotools' COCOeval records a detection's match as the annotation's id and reads 0 as
        # "unmatched" (and indexes annotations by id): torchmetrics renumbers, COCOeval does not
        log.warning(
            "%s: annotation ids %s: pycocotools' COCOeval on this file counts a detection matched "
            "to annotation 0 as a false positive (and keeps one annotation per id), so its AP "
            "will be lower than vtk's, which renumbers. `vtk convert coco %s --out FIXED.json` "
            "writes the file with ids from 1.",
            path, "start at 0" if 0 in ann_ids else "repeat", path,
        )  # fmt: skip
    for ann in data["annotations"]:
        if ann["category_id"] not in categories:
            raise DataError(
                f"{path}: annotation {ann['id']} (image {ann['image_id']}) has category_id "
                f"{ann['category_id']}, which is not among the file's categories {sorted(categories)}."
            )
        if ann["image_id"] not in images:
            raise DataError(
                f"{path}: annotation {ann['id']} refers to image {ann['image_id']}, which is not in 'images'."
            )
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)
        ):
            raise DataError(
                f"{path}: annotation {ann['id']} (image {ann['image_id']}) has bbox {bbox}; COCO needs [x, y, width, height]."
            )
    return data


def coco_api(data: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` over an already read and checked annotation dict."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


@dataclass
class ImageRecord:
    """One image's annotations, in original pixel coordinates (x1, y1, x2, y2)."""

    image_id: int
    path: Path
    boxes: np.ndarray  # (N, 4) float32, non-crowd, for training
    labels: np.ndarray  # (N,) int64, contiguous 0..K-1
    eval_boxes: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 4), np.float64)
    )  # incl. crowd
    eval_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    size: tuple[int, int] | None = None  # (height, width) from the JSON


def coco_records(
    data: dict[str, Any],
    image_dir: str | Path,
    category_ids: Sequence[int],
    keep_empty: bool,
    where: str,
) -> list[ImageRecord]:
    """Per-image annotations of a checked COCO dict, with the report of what was changed."""
    image_dir = Path(image_dir).expanduser()
    if not image_dir.is_dir():
        raise DataError(f"image folder {image_dir} does not exist; check the path in the recipe.")
    label_of = {cid: i for i, cid in enumerate(category_ids)}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records, clipped, degenerate, crowd, empty, missing = [], 0, 0, 0, 0, []
    for im in sorted(data["images"], key=lambda im: im["id"]):
        path = image_dir / im["file_name"]
        if not path.is_file():
            missing.append((im["id"], path))
            continue
        w, h = im.get("width"), im.get("height")
        boxes, labels, crowd_flags, areas = [], [], [], []
        for ann in by_image.get(im["id"], []):
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            x1, y1, x2, y2 = x, y, x + bw, y + bh
            if w is not None and h is not None:
                cx1, cy1, cx2, cy2 = (
                    max(x1, 0.0),
                    max(y1, 0.0),
                    min(x2, float(w)),
                    min(y2, float(h)),
                )
                if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2) and cx2 > cx1 and cy2 > cy1:
                    clipped += 1
                x1, y1, x2, y2 = cx1, cy1, cx2, cy2
            if x2 <= x1 or y2 <= y1:
                degenerate += 1
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(label_of[ann["category_id"]])
            crowd_flags.append(int(ann.get("iscrowd", 0)))
            areas.append(float(ann.get("area", (x2 - x1) * (y2 - y1))))
        # evaluation keeps the file's numbers in float64, so the metric scores the boxes the file holds
        boxes_a = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels_a, crowd_a = np.asarray(labels, np.int64), np.asarray(crowd_flags, np.int64)
        crowd += int(crowd_a.sum())
        train = crowd_a == 0
        if not train.any():
            empty += 1
            if not keep_empty:
                continue
        records.append(
            ImageRecord(
                im["id"], path, boxes_a[train].astype(np.float32), labels_a[train], boxes_a, labels_a, crowd_a,
                np.asarray(areas, np.float64), (int(h), int(w)) if w and h else None,
            )
        )  # fmt: skip
    if missing:
        image_id, path = missing[0]
        raise DataError(
            f"{len(missing)} images of {where} are missing: image id {image_id} is {path}, which does "
            "not exist. Restore the files or remove them from the annotation file."
        )
    notes = []
    if clipped:
        notes.append(f"{clipped} boxes clipped to their image")
    if degenerate:
        notes.append(f"{degenerate} boxes with no area dropped")
    if crowd:
        notes.append(f"{crowd} crowd regions left out of the loss (kept for evaluation)")
    if empty:
        notes.append(
            f"{empty} images without boxes " + ("kept as negatives" if keep_empty else "left out")
        )
    if notes:
        log.info("%s: %s", where, "; ".join(notes))
    if not records:
        raise DataError(
            f"{where} has no images left after filtering (images without boxes "
            f"{'kept' if keep_empty else 'left out: set keep_empty: true'})."
        )
    return records


def _drafted_scale(size: tuple[int, int], got: tuple[int, ...]) -> int | None:
    """The JPEG draft reduction (2, 4 or 8) that turns ``size`` (h, w) into ``got``, or None."""
    for s in (2, 4, 8):
        if got == (math.ceil(size[0] / s), math.ceil(size[1] / s)):
            return s
    return None


def aspect_ratio_bins(k: int) -> list[float]:
    """torchvision's reference bins of width / height for group factor ``k``."""
    return (2 ** np.linspace(-1, 1, 2 * k + 1)).tolist()


def aspect_ratio_groups(records: Sequence[ImageRecord], k: int) -> np.ndarray:
    """Each image's group: its width / height binned as torchvision's reference
    ``create_aspect_ratio_groups(k)`` bins it (size from the JSON, else the file's header)."""
    ratios = []
    for r in records:
        if r.size is not None:
            h, w = r.size
        else:
            with Image.open(image_source(r.path)) as img:
                w, h = upright_size(img)
        ratios.append(w / h)
    return np.digitize(np.asarray(ratios), aspect_ratio_bins(k)).astype(np.int64)


def repeat_factors(records: Sequence[ImageRecord], num_classes: int, t: float) -> np.ndarray:
    """LVIS's repeat factor per image: ``max(1, sqrt(t / f(c)))`` of its rarest class c, where
    ``f(c)`` is the share of the images that hold c (1 for images without objects)."""
    holds = np.zeros((len(records), num_classes), dtype=bool)
    for i, r in enumerate(records):
        holds[i, r.labels] = True
    share = holds.mean(0)
    per_class = np.maximum(1.0, np.sqrt(t / np.maximum(share, 1e-12)))
    return np.array([per_class[h].max() if h.any() else 1.0 for h in holds])


class CocoDetectionDataset(ImageFileDataset):
    """Images with their boxes: ``{"image", "target", "eval_target", "image_id", "path"}``.

    ``target`` (boxes after augmentation, labels; no crowd) feeds the loss; ``eval_target``
    (original coordinates, crowd flags and areas as in the file) feeds the evaluation.
    """

    #: what an image goes through when its augmentation left none of its boxes (RFB Net's
    #: fallback to the un-augmented image); None: it trains without boxes
    fallback: Any = None

    @property
    def records(self) -> list[ImageRecord]:
        return self.samples

    def item(self, r: ImageRecord, image: np.ndarray) -> dict[str, Any]:
        boxes_in, scale = r.boxes, (1.0, 1.0)
        if self.decode_fit is not None and r.size is not None and image.shape[:2] != r.size:
            drafted = _drafted_scale(r.size, image.shape[:2])
            if drafted is not None:  # decoded at 1/2, 1/4 or 1/8: boxes follow, results go back
                fx, fy = image.shape[1] / r.size[1], image.shape[0] / r.size[0]
                boxes_in = r.boxes * np.asarray([fx, fy, fx, fy], np.float32)
                scale = (1 / fx, 1 / fy)
        if r.size is not None and image.shape[:2] != r.size and scale == (1.0, 1.0):
            if image.shape[1::-1] == r.size and exif_orientation(r.path) in SWAPPING_ORIENTATIONS:
                raise DataError(
                    f"image {r.image_id} ({r.path}) is stored sideways with an EXIF orientation "
                    f"tag: read upright (as vtk, OpenCV and annotation tools show it) it is "
                    f"{image.shape[1]}x{image.shape[0]}, but the annotation file gives the stored "
                    f"size {r.size[1]}x{r.size[0]}. If the boxes were drawn on the upright image, "
                    "swap its width and height in the file; if on the stored pixels, set "
                    "exif_orientation: ignore (--data.exif_orientation ignore)."
                )
            raise DataError(
                f"image {r.image_id} ({r.path}) is {image.shape[1]}x{image.shape[0]} but the annotation "
                f"file says {r.size[1]}x{r.size[0]}; its boxes would be misplaced. Fix width/height."
            )
        out = self.transform(image=image, bboxes=boxes_in, labels=r.labels)
        if self.fallback is not None and len(out["bboxes"]) == 0 and len(r.labels):
            out = self.fallback(image=image, bboxes=boxes_in, labels=r.labels)
        boxes = torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4))
        labels = torch.as_tensor(np.asarray(out["labels"], np.int64))
        return {
            "image": out["image"],
            "target": {"boxes": boxes, "labels": labels},
            "eval_target": {
                "boxes": torch.from_numpy(r.eval_boxes),
                "labels": torch.from_numpy(r.eval_labels),
                "iscrowd": torch.from_numpy(r.eval_crowd),
                "area": torch.from_numpy(r.eval_area),
            },
            "image_id": r.image_id,
            "path": str(r.path),
            "scale": scale,  # image pixels -> the file's pixels (not 1 when draft-decoded)
        }


class CocoDetectionDataModule(VisionDataModule):
    """COCO-format detection data (COCO itself, or your own set in its format).

    Args:
        train_images, train_annotations: the training image folder and annotation JSON.
        val_annotations: the validation annotation JSON (its categories give ``num_classes``,
            ``class_names`` and ``category_ids``).
        val_images: the validation image folder (default: ``train_images``, for sets that keep
            all images in one folder with one JSON per split).
        test_images, test_annotations: for ``vtk test`` (``test_images`` defaults to
            ``val_images``); no test split without ``test_annotations`` (``vtk test`` then
            stops; the validation JSON evaluates the validation images, and says so).
        keep_empty: keep training images without boxes as negatives (COCO does).
        hflip, vflip: horizontal and vertical flip probabilities in training (vertical flips
            for images without an up: cells, aerial views).
        photometric: SSD's photometric distortion in training (brightness, contrast,
            saturation, hue; :func:`vtk.data.transforms.detection_train`).
        zoom_out_crop: SSD's sampling in training: a zoom out of up to 4x and a patch with a
            minimum IoU with the objects (SSD §2.2, §3.6); ``true`` / ``ssd`` in SSD's order
            (zoom out half of the time, then the crop), ``rfbnet`` in RFB Net's (crop, the
            distortion, zoom out with p 0.6). The zoomed-out canvas is filled with ImageNet's
            mean colour.
        aspect_ratio_groups: batch training images of like shape together, so fewer padded
            pixels are computed: ``k`` as torchvision's reference ``--aspect-ratio-group-factor``
            (width / height cut at ``2 ** linspace(-1, 1, 2k + 1)``: 3 gives 8 groups, 1 still
            parts portrait from landscape); 0 (default) mixes them.
        repeat_factor_threshold: repeat-factor sampling for long-tailed classes (LVIS, Gupta et
            al. 2019 §3.2): an image is repeated ``max(1, sqrt(t / f))`` times per epoch (in
            expectation), ``f`` the share of training images that hold its rarest class; ``t``
            is typically 0.001 (LVIS) or up to 0.1 for small sets. None (default): off.
        jpeg_draft: decode large JPEGs at no less than the size the detector resizes them to
            (JPEG draft mode: 1/2, 1/4 or 1/8 of the photo, in the DCT) for training and
            evaluation; boxes are scaled with the image, detections back to the file's pixels
            (read at setup from the task's detector, ``resize_range``).
        batch_size: images per process and step (per GPU under DDP).
        **kwargs: see :class:`~vtk.data.base.VisionDataModule` (``val_batch_size``,
            ``num_workers``, ``on_bad_image``, ``predict_dir``).
    """

    # images of different sizes stay a list (the detector's transform batches them)
    collate_fn = staticmethod(list_collate)
    full_train_batch = False  # a small set keeps its one partial batch
    streams = True

    def __init__(
        self,
        train_images: str,
        train_annotations: str,
        val_annotations: str,
        val_images: str | None = None,
        test_images: str | None = None,
        test_annotations: str | None = None,
        keep_empty: bool = True,
        hflip: float = 0.5,
        vflip: float = 0.0,
        photometric: bool = False,
        zoom_out_crop: bool | Literal["ssd", "rfbnet"] = False,
        aspect_ratio_groups: int = 0,
        repeat_factor_threshold: float | None = None,
        jpeg_draft: bool = False,
        batch_size: int = 2,
        **kwargs: Any,
    ) -> None:
        val_images = val_images or train_images
        self.paths = {
            "train": (train_images, train_annotations),
            "val": (val_images, val_annotations),
            "test": (test_images or val_images, test_annotations),
        }
        self._cache: dict[str, Any] = getattr(self, "_cache", {})  # files read in memory
        if kwargs.get("stream") is not None:  # the stream holds the classes and the samples
            self.stream, self.stream_cache = kwargs["stream"], kwargs.get("stream_cache")
            self.stream_options = kwargs.get("stream_options")
            facts = self.stream_facts()
            names, ids = facts["class_names"], facts["category_ids"]
        else:
            val = self._cache.get(str(Path(val_annotations))) or read_coco_json(val_annotations)
            categories = sorted(val["categories"], key=lambda c: c["id"])
            if not categories:
                raise DataError(f"{val_annotations} lists no categories.")
            self._cache[str(Path(val_annotations))] = val
            names = [str(c["name"]) for c in categories]
            ids = [int(c["id"]) for c in categories]
        super().__init__(len(names), names, ids, batch_size=batch_size, **kwargs)
        self.category_ids: list[int]
        self.keep_empty, self.hflip, self.photometric = keep_empty, hflip, photometric
        self.vflip = vflip
        if zoom_out_crop not in (False, True, "ssd", "rfbnet"):
            raise DataError(
                f"zoom_out_crop must be false, true (SSD's order), 'ssd' or 'rfbnet', got "
                f"{zoom_out_crop!r}."
            )
        self.zoom_out_crop = zoom_out_crop
        if aspect_ratio_groups < 0:
            raise DataError(
                f"aspect_ratio_groups must be 0 (off) or more, got {aspect_ratio_groups}."
            )
        if repeat_factor_threshold is not None and not 0 < repeat_factor_threshold <= 1:
            raise DataError(
                f"repeat_factor_threshold must be in (0, 1], got {repeat_factor_threshold}."
            )
        self.aspect_ratio_groups = aspect_ratio_groups
        self.jpeg_draft = jpeg_draft
        self.repeat_factor_threshold = repeat_factor_threshold

    test_option = "--data.test_annotations FILE (and --data.test_images DIR)"
    classes_from = "the categories of the validation JSON (val_annotations)"

    def test_source(self) -> str | None:
        annotations = self.paths["test"][1]
        if annotations is None:
            return None
        if Path(annotations).expanduser() == Path(self.paths["val"][1]).expanduser():
            return f"the validation images ({annotations}), as test_annotations says"
        return ""

    def train_sampler_options(self, dataset: Any) -> dict[str, Any]:
        options: dict[str, Any] = {}
        records = dataset.records
        if self.aspect_ratio_groups:
            options["groups"] = aspect_ratio_groups(records, self.aspect_ratio_groups)
            counts = np.bincount(options["groups"])
            log.info(
                "aspect-ratio groups (width/height bins %s): %s images",
                [round(b, 2) for b in aspect_ratio_bins(self.aspect_ratio_groups)],
                counts.tolist(),
            )
        if self.repeat_factor_threshold is not None:
            factors = repeat_factors(records, self.num_classes, self.repeat_factor_threshold)
            options["repeat_factors"] = factors
            log.info(
                "repeat-factor sampling (t=%g): an epoch is %d samples from %d images; "
                "factors 1 to %.2f",
                self.repeat_factor_threshold, round(factors.sum()), len(factors), factors.max(),
            )  # fmt: skip
        return options

    def _records(self, split: str) -> list[ImageRecord]:
        images, annotations = self.paths[split]
        data = self._cache.get(str(Path(annotations))) or read_coco_json(annotations)
        ids = sorted(int(c["id"]) for c in data["categories"])
        if ids != self.category_ids:
            raise DataError(
                f"the categories of {annotations} (ids {ids[:10]}) differ from the validation file's "
                f"({self.category_ids[:10]}); all splits must share one category list."
            )
        used = {a["category_id"] for a in data["annotations"]}
        unused = [n for i, n in zip(self.category_ids, self.class_names) if i not in used]
        if unused and split == "train":
            log.warning(
                "%s: %d categories have no annotation: %s", annotations, len(unused), unused[:10]
            )
        return coco_records(
            data,
            images,
            self.category_ids,
            self.keep_empty or split != "train",
            f"{split} ({annotations})",
        )

    def train_transform(self) -> Any:
        return T.detection_train(self.hflip, self.photometric, self.zoom_out_crop, vflip=self.vflip)

    def eval_spec(self) -> InputSpec:
        # RGB in [0, 1] at the image's size: the detector resizes and normalises (torchvision's
        # transform), and gives its boxes back in the image's own pixels
        return InputSpec(mean=None, std=None)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._rfbnet_resize()
        if not self.jpeg_draft:
            return
        # decode large JPEGs no smaller than the detector resizes them to (its resize_range,
        # part of the detector interface the task exposes)
        task = self.trainer.lightning_module if self.trainer is not None else None
        fit = task.resize_range(training=True) if hasattr(task, "resize_range") else None
        if fit is None:
            log.warning("jpeg_draft: no detector tells its resize here; images decoded whole")
            return
        for dataset in self.datasets.values():
            if hasattr(dataset, "decode_fit"):
                dataset.decode_fit = fit
        log.info("JPEG draft decoding: no smaller than shorter side %d, longer %d", *fit)

    def _rfbnet_resize(self) -> None:
        """RFB Net's augmentation ends with the warp to the detector's square (a random
        interpolation, then tiny boxes dropped); the square is the detector's own size."""
        train = self.datasets.get("train")
        task = self.trainer.lightning_module if self.trainer is not None else None
        if self.zoom_out_crop != "rfbnet" or train is None or not hasattr(task, "resize_range"):
            return
        size = task.resize_range(training=True)[0]
        train.transform = T.detection_train(
            self.hflip, self.photometric, self.zoom_out_crop, vflip=self.vflip, size=size
        )
        train.fallback = T.detection_resize(size)

    def make_dataset(self, split: str) -> CocoDetectionDataset:
        records = self.carve(split, self._records, key=lambda record: str(record.path))
        return CocoDetectionDataset(records, self.transform(split), self.on_bad_image)

    def draw_sample(self, item: dict[str, Any]) -> Tensor:
        labels = item["target"]["labels"].tolist()
        return draw_detections(
            T.to_uint8(item["image"], self.eval_spec()), item["target"]["boxes"], labels,
            [1.0] * len(labels), self.class_names,
        )  # fmt: skip
