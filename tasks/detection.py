"""Object detection task: the detector's own losses, COCO mAP, COCO results JSON.

The model is a torchvision-style detector (:class:`vtk.models.FCOS`, :class:`vtk.models.RetinaNet`):
``model(images, targets)`` returns its loss dict in training, ``model(images)`` its detections
in the input images' coordinates otherwise. The metric is torchmetrics' ``MeanAveragePrecision``
(pycocotools backend by default, faster-coco-eval as an option) on the annotation file's own
boxes, crowd flags and areas, so its numbers are the official COCO ones.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert

from vtk._compat import GatheredListStates
from vtk.callbacks import DetectionWriter
from vtk.data.io import resize_scale
from vtk.drawing import DRAW_SCORE, draw_detections
from vtk.errors import ConfigError
from vtk.metrics import DetectionConfusionMatrix
from vtk.models.inference import sliced_detections
from vtk.reports import confusion_figure, pr_figure, write_confusion_matrix, write_pr_curves
from vtk.spec import InputSpec

from .base import VisionTask

log = logging.getLogger("vtk")

# pycocotools' own thresholds, in float64: torchmetrics' defaults come from a float32 linspace,
# which moves AP by up to ~1e-5 from what COCOeval reports on the same detections
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
COCO_REC_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()

#: torchmetrics' result keys -> the names vtk logs (COCO's)
COCO_METRICS = {
    "map": "AP", "map_50": "AP50", "map_75": "AP75",
    "map_small": "APs", "map_medium": "APm", "map_large": "APl", "mar_100": "AR100",
}  # fmt: skip


def per_class_ap(result: dict[str, Any]) -> dict[str, dict[int, float]]:
    """``{"AP": {class: AP}, "AP50": {...}}`` from torchmetrics' result with
    ``extended_summary``: COCOeval's precision array ``(T, R, K, A, M)`` averaged as
    ``COCOeval.summarize`` does for one category (all areas, the last max-detections setting;
    -1 entries, recall levels never reached, left out; -1 when there are none)."""
    precision, classes = result.get("precision"), result.get("classes")
    if precision is None or classes is None or precision.ndim != 5:
        return {}
    out: dict[str, dict[int, float]] = {"AP": {}, "AP50": {}}
    for k, c in enumerate(classes.flatten().tolist()):  # a 0-d tensor for one class
        for name, p in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[0, :, k, 0, -1])):
            valid = p[p > -1]
            out[name][int(c)] = float(valid.double().mean()) if valid.numel() else -1.0
    return out


def _tensorboard(task: VisionTask) -> Any | None:
    """The SummaryWriter of the run's TensorBoard logger, if it has one."""
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        trainer = task.trainer
    except RuntimeError:  # not attached to a Trainer (Lightning raises)
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class CocoMeanAveragePrecision(GatheredListStates, MeanAveragePrecision):
    """torchmetrics' ``MeanAveragePrecision``, its per-image lists gathered whole across
    processes: vtk's evaluation shards may differ by one image (none is repeated)."""


class DetectionTask(VisionTask):
    """Train and evaluate a detector.

    Args:
        model: the detector (with a ``num_classes`` attribute).
        map_backend: ``pycocotools`` (default) or ``faster_coco_eval`` (``pip install
            faster-coco-eval``; same numbers, faster on large sets).
        confusion_score_thresh, confusion_iou_thresh: the detections that count in the confusion
            matrix ``vtk test`` writes, and the IoU that matches them to objects
            (:class:`~vtk.metrics.DetectionConfusionMatrix`).
        draw_score: ``vtk predict`` draws the detections scoring at least this (all of them
            are in ``predictions.json``); images left with no box drawn are counted in the log.
        slice_size, slice_overlap, slice_whole, slice_iou: sliced detection for large images
            (SAHI) in evaluation and prediction: ``slice_size`` x ``slice_size`` tiles
            overlapping by ``slice_overlap``, each detected as an image of its own (so small
            objects are not shrunk with the whole image), plus the whole image
            (``slice_whole``), merged at ``slice_iou`` by class-aware NMS (``slice_merge: nms``)
            or SAHI's default greedy merging by intersection over the smaller box
            (``slice_merge: nmm``). Default off.
        **kwargs: what every task takes (:class:`~vtk.tasks.VisionTask`: optimizer,
            lr_scheduler, class_names, category_ids — the dataset's own id of each class,
            written into ``coco_results.json`` and predictions —, input_spec — RGB in [0, 1]:
            the detector resizes and normalises images itself —, ...).

    Logged: ``train/loss`` and each of the detector's losses, ``train/lr``; ``val/AP``,
    ``val/AP50``, ``val/AP75``, ``val/APs``, ``val/APm``, ``val/APl``, ``val/AR100``,
    ``val/AP/<class>``, ``val/AP50/<class>``; the same under ``test/``. ``vtk test`` also writes
    ``coco_results.json`` (original image and category ids), ``confusion_matrix.csv`` / ``.png``
    and ``pr_curves.csv`` / ``.png`` (per class, IoU 0.5) to ``--output_dir`` or the run folder. A prediction is
    ``{"boxes"}`` (x1, y1, x2, y2 in the image's pixels), ``"labels"``, ``"names"``,
    ``"category_ids"``, ``"scores"``.
    """

    main_metric = ("val/AP", "max")
    eval_options = (
        "confusion_score_thresh", "confusion_iou_thresh", "draw_score", "slice_size",
        "slice_overlap", "slice_whole", "slice_iou", "slice_merge",
    )  # fmt: skip
    deploy_kind = "detection"  # boxes, scores and labels, decoded and suppressed in the graph
    int8_refusal = (
        "INT8 export is for classification, multi-label and segmentation; a detector's graph holds its "
        "box decoding and NMS, which this route does not quantise yet."
    )

    def __init__(
        self,
        model: nn.Module,
        map_backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        confusion_score_thresh: float = 0.25,
        confusion_iou_thresh: float = 0.5,
        draw_score: float = DRAW_SCORE,
        slice_size: int | None = None,
        slice_overlap: float = 0.2,
        slice_whole: bool = True,
        slice_iou: float = 0.5,
        slice_merge: Literal["nms", "nmm"] = "nms",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.draw_score = draw_score
        if slice_size is not None and slice_size < 32:
            raise ConfigError(f"slice_size is a tile side in pixels (e.g. 640), got {slice_size}.")
        if not 0.0 <= slice_overlap < 1.0:
            raise ConfigError(
                f"slice_overlap is a share of the tile in [0, 1), got {slice_overlap}."
            )
        self.slice_size, self.slice_overlap = slice_size, slice_overlap
        self.slice_whole, self.slice_iou = slice_whole, slice_iou
        if slice_merge not in ("nms", "nmm"):
            raise ConfigError(f"slice_merge is nms or nmm, got {slice_merge!r}.")
        self.slice_merge = slice_merge
        if map_backend == "faster_coco_eval" and importlib.util.find_spec(map_backend) is None:
            raise ConfigError(
                "map_backend: faster_coco_eval needs its package: pip install faster-coco-eval "
                '(or pip install -e ".[fast-eval]"), or use map_backend: pycocotools.'
            )
        # extended_summary: COCOeval's precision array, from which per-class AP and AP50 and the
        # PR curves are read (one evaluation; class_metrics would re-run it once per class)
        map_options = dict(  # not `kwargs`: jsonargparse reads this source
            box_format="xyxy", iou_type="bbox", backend=map_backend,
            iou_thresholds=COCO_IOU_THRESHOLDS, rec_thresholds=COCO_REC_THRESHOLDS,
            extended_summary=True,
        )  # fmt: skip
        self.val_map = CocoMeanAveragePrecision(**map_options)
        self.test_map = CocoMeanAveragePrecision(**map_options)
        self.val_confusion = DetectionConfusionMatrix(
            self.num_classes, confusion_score_thresh, confusion_iou_thresh
        )
        self.test_confusion = DetectionConfusionMatrix(
            self.num_classes, confusion_score_thresh, confusion_iou_thresh
        )
        self._shown: list[tuple[Tensor, dict[str, Tensor]]] = []
        self._results: list[dict[str, Any]] = []

    def default_input_spec(self) -> InputSpec:
        return InputSpec(mean=None, std=None)  # the detector normalises and resizes itself

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)

    def detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Evaluation and prediction: the detector on each image, or sliced (``slice_size``:
        tiles run as images of their own and merged, :func:`vtk.models.inference.sliced_detections`)."""
        if self.slice_size is None:
            return self.model(images)
        limit = getattr(self.model, "detections_per_img", 100)
        options = (self.slice_size, self.slice_overlap, self.slice_whole, self.slice_iou)
        return [
            sliced_detections(
                self.model, image, *options, max_detections=limit, merge=self.slice_merge
            )
            for image in images
        ]

    def training_losses(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        losses = self.model(batch["image"], batch["target"])
        return {"loss": sum(losses.values()), **losses}

    def resize_range(self, training: bool = False) -> tuple[int, int]:
        """(shorter side, longer cap) the detector resizes images to (the detector interface,
        :mod:`vtk.models.detector`): what the data decodes large JPEGs to at least."""
        return self.model.resize_range(training)

    def _evaluate(
        self, batch: dict[str, Any], metric: MeanAveragePrecision
    ) -> list[dict[str, Tensor]]:
        detections = self.detect(batch["image"])
        for d, (sx, sy) in zip(detections, batch.get("scale") or []):
            if (sx, sy) != (1.0, 1.0):  # draft-decoded: back to the file's pixels
                d["boxes"] = d["boxes"] * d["boxes"].new_tensor([sx, sy, sx, sy])
        metric.update(
            [{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections],
            batch["eval_target"],
        )
        return detections

    def _log_map(self, stage: str, metric: MeanAveragePrecision) -> dict[str, Any]:
        result = metric.compute()  # synchronised across processes by torchmetrics
        self.log_dict(
            {f"{stage}/{name}": result[key] for key, name in COCO_METRICS.items()},
            prog_bar=stage == "val",
        )  # already synchronised by torchmetrics: the same on every process
        for name, values in per_class_ap(result).items():
            for c, value in values.items():
                self.log(f"{stage}/{name}/{self.class_names[c]}", value)
        metric.reset()
        return result

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        detections = self._evaluate(batch, self.val_map)
        self.val_confusion.update(detections, batch["eval_target"])
        if batch_idx == 0 and _tensorboard(self) is not None:  # a few images to draw
            scales = batch.get("scale") or [(1.0, 1.0)] * len(detections)
            for image, det, target, (sx, sy) in list(
                zip(batch["image"], detections, batch["eval_target"], scales)
            )[: self.TENSORBOARD_IMAGES]:
                # boxes are in the file's pixels (draft decoding): back to this image's
                to_image = torch.tensor([sx, sy, sx, sy])
                drawn = {
                    "boxes": det["boxes"].detach().float().cpu() / to_image,
                    "labels": det["labels"].cpu(), "scores": det["scores"].float().cpu(),
                    "truth": target["boxes"].float().cpu() / to_image,
                    "truth_labels": target["labels"].cpu(),
                }  # fmt: skip
                self._shown.append((image.detach().cpu(), drawn))

    #: validation images drawn into TensorBoard at each validation (rank 0's first batch)
    TENSORBOARD_IMAGES = 4

    def on_validation_epoch_end(self) -> None:
        result = self._log_map("val", self.val_map)
        matrix = self.val_confusion.compute().cpu().numpy()  # summed across processes
        self.val_confusion.reset()
        shown, self._shown = self._shown, []
        writer = _tensorboard(self)
        if writer is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        step = self.global_step
        names = [*self.class_names, "background"]
        for tag, fig in (("val/confusion_matrix", confusion_figure(matrix, names, "objects")),
                         ("val/pr_curves", pr_figure(self._pr_table(result),
                                                     COCO_REC_THRESHOLDS, self.class_names))):  # fmt: skip
            if fig is not None:
                writer.add_figure(tag, fig, step)  # closes the figure
        for i, (image, d) in enumerate(shown):  # predictions left, ground truth right
            uint8 = (image.clamp(0, 1) * 255).to(torch.uint8)
            predicted = draw_detections(
                uint8, d["boxes"], d["labels"].tolist(), d["scores"].tolist(), self.class_names
            )
            truth = draw_detections(
                uint8, d["truth"], d["truth_labels"].tolist(), [1.0] * len(d["truth"]),
                self.class_names,
            )  # fmt: skip
            writer.add_image(f"val/image_{i}", torch.cat([predicted, truth], 2), step)

    def _pr_table(self, result: dict[str, Any]) -> np.ndarray:
        """``(R, K)``: each class's COCOeval precision at IoU 0.5, all areas, 100 detections;
        -1 for classes the split has neither in its objects nor in its detections."""
        curves = np.full((len(COCO_REC_THRESHOLDS), self.num_classes), -1.0)
        if "precision" in result:
            for k, c in enumerate(result["classes"].flatten().tolist()):
                curves[:, c] = result["precision"][0, :, k, 0, -1].cpu().numpy()
        return curves

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        detections = self._evaluate(batch, self.test_map)
        self.test_confusion.update(detections, batch["eval_target"])
        for image_id, det in zip(batch["image_id"], detections):
            # x, y, w, h in float32, as torchmetrics converts them: the written file then scores
            # exactly as the logged metric under pycocotools
            boxes = box_convert(det["boxes"].float(), "xyxy", "xywh").cpu().tolist()
            for box, score, label in zip(boxes, det["scores"].tolist(), det["labels"].tolist()):
                self._results.append(
                    {
                        "image_id": image_id,
                        "category_id": self.category_ids[label],
                        "bbox": box,
                        "score": score,
                    }
                )

    def on_test_epoch_end(self) -> None:
        result = self._log_map("test", self.test_map)
        matrix = self.test_confusion.compute().cpu().numpy()  # summed across processes
        self.test_confusion.reset()
        if self.trainer.is_global_zero:
            folder = self.output_path(".")
            write_confusion_matrix(matrix, [*self.class_names, "background"], folder, "objects")
            if "precision" in result:
                write_pr_curves(
                    self._pr_table(result), COCO_REC_THRESHOLDS, self.class_names, folder
                )
        results = self._results
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(self.trainer.world_size)]
            dist.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        self._results = []
        if self.trainer.is_global_zero:
            path = self.output_path(".") / "coco_results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results))
            log.info("wrote %d detections (COCO results format) to %s", len(results), path)

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        results = []
        for i, p, d in zip(batch["id"], batch["path"], self.detect(batch["image"])):
            labels = d["labels"].tolist()
            results.append(
                {
                    "id": i,
                    "path": p,
                    "boxes": d["boxes"].float().cpu().numpy(),
                    "scores": d["scores"].float().tolist(),
                    "labels": labels,
                    "names": [self.class_names[k] for k in labels],
                    "category_ids": [self.category_ids[k] for k in labels],
                }
            )
        return results

    def prediction_writer(self, output_dir: Path) -> Callback:
        return DetectionWriter(str(output_dir), self.class_names, draw_score=self.draw_score)

    def default_size(self) -> int:
        return self.model.resize_range(training=True)[0]

    def example_input(self, size: int | None = None, batch: int = 1) -> list[Tensor]:
        """Images in [0, 1]: the detector resizes (to ``min_size``) and normalises them."""
        side = size or self.default_size()
        g = torch.Generator().manual_seed(0)
        return [torch.rand(3, side, side, generator=g) for _ in range(batch)]

    def compile_network(self, compile: Callable[[nn.Module], nn.Module]) -> None:
        """The backbone and neck only: torchvision's transform and post-processing batch and
        select data-dependently (with Inductor's freezing the whole FCOS failed to compile in
        PyTorch 2.14, measured), and the convolutions are in the backbone and neck."""
        self.model.backbone = compile(self.model.backbone)

    def fold_example(self) -> tuple[Any, Any]:
        """A normalised batch through the backbone and neck (where a detector's BatchNorms are;
        the heads have GroupNorm or none), compared before NMS."""
        side = min(self.default_size(), 128)
        example = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
        return example, lambda m, x: m.backbone(x)

    def export_spec(self, size: int) -> dict[str, Any]:
        """torchvision's export path: one image (3, H, W) in [0, 1] -> boxes, scores, labels."""
        return {
            "module": self.model.eval(),
            "example": self.example_input(size),
            "input_names": ["image"],
            "output_names": ["boxes", "scores", "labels"],
            "dynamic_axes": {"image": {1: "height", 2: "width"}},
        }

    def object_sizes(self, datamodule: Any) -> tuple[np.ndarray, str]:
        """The validation boxes' longer sides after the detector's resize (crowd left out)."""
        datamodule.setup("validate")
        min_size, max_size = self.model.resize_range()
        sides: list[float] = []
        for r in datamodule.datasets["val"].records:
            h, w = r.size or (min_size, min_size)
            scale = resize_scale((h, w), min_size, max_size)
            wh = (r.eval_boxes[:, 2:] - r.eval_boxes[:, :2])[r.eval_crowd == 0]
            sides += (wh.max(axis=1) * scale).tolist() if len(wh) else []
        return np.asarray(sides), f"the {len(sides)} validation boxes (after the detector's resize)"
