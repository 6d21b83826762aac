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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert

from vtk.callbacks import DetectionWriter
from vtk.errors import ConfigError
from vtk.tasks.base import OptimizerFactory, SchedulerFactory, VisionTask

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


class CocoMeanAveragePrecision(MeanAveragePrecision):
    """torchmetrics' ``MeanAveragePrecision``, synchronised as whole lists.

    Its per-image list states are otherwise gathered one tensor at a time, which needs the same
    number of images on every process; vtk's evaluation shards differ by one image on an odd
    set (every image is scored once, none repeated), so each state is gathered here as one
    object per process, in rank order: one collective per state, any image counts.
    """

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        group = process_group or self.process_group
        local = {attr: [_to_cpu(x) for x in getattr(self, attr)] for attr in self._reductions}
        gathered: list[dict[str, list[Any]]] = [{} for _ in range(dist.get_world_size(group))]
        dist.all_gather_object(gathered, local, group=group)
        for attr in self._reductions:
            setattr(self, attr, [_to(x, self.device) for part in gathered for x in part[attr]])


def _to_cpu(x: Any) -> Any:
    return x.cpu() if isinstance(x, Tensor) else x


def _to(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, Tensor) else x


class DetectionTask(VisionTask):
    """Train and evaluate a detector.

    Args:
        model: the detector (with a ``num_classes`` attribute).
        optimizer: ``optimizer(params)``; default SGD (lr 0.01, momentum 0.9, wd 1e-4).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps)``, stepped every iteration.
        class_names: for per-class AP and predictions (linked from the data).
        map_backend: ``pycocotools`` (default) or ``faster_coco_eval`` (``pip install
            faster-coco-eval``; same numbers, faster on large sets).

    Logged: ``train/loss`` and each of the detector's losses, ``train/lr``; ``val/AP``,
    ``val/AP50``, ``val/AP75``, ``val/APs``, ``val/APm``, ``val/APl``, ``val/AR100``; the same
    under ``test/`` plus ``test/AP/<class>``. ``vtk test`` also writes ``coco_results.json``
    (original image and category ids) to ``--output_dir`` or the run folder.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        class_names: Sequence[str] | None = None,
        map_backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
    ) -> None:
        super().__init__(model, optimizer, lr_scheduler)
        num_classes = getattr(model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigError(f"{type(model).__name__} has no integer num_classes attribute.")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(
                f"{len(class_names)} class names for a model with num_classes={num_classes}."
            )
        if map_backend == "faster_coco_eval" and importlib.util.find_spec(map_backend) is None:
            raise ConfigError(
                "map_backend: faster_coco_eval needs its package: pip install faster-coco-eval "
                '(or pip install -e ".[fast-eval]"), or use map_backend: pycocotools.'
            )
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        kwargs = dict(
            box_format="xyxy", iou_type="bbox", backend=map_backend,
            iou_thresholds=COCO_IOU_THRESHOLDS, rec_thresholds=COCO_REC_THRESHOLDS,
        )  # fmt: skip
        self.val_map = CocoMeanAveragePrecision(**kwargs)
        self.test_map = CocoMeanAveragePrecision(class_metrics=True, **kwargs)
        #: where ``vtk test`` / ``vtk predict`` write files (``--output_dir``); default the run folder
        self.output_dir: str | None = None
        self._results: list[dict[str, Any]] = []

    def configure_callbacks(self) -> list[Callback]:
        if not self.trainer.predicting:
            return []
        category_ids = getattr(self.trainer.datamodule, "category_ids", None)
        return [
            DetectionWriter(str(self._output_dir("predictions")), self.class_names, category_ids)
        ]

    def _output_dir(self, default: str) -> Path:
        run_dir = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(self.output_dir) if self.output_dir else Path(run_dir) / default

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        losses = self.model(batch["image"], batch["target"])
        loss = sum(losses.values())
        n = len(batch["image"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_lr()
        return loss

    def _evaluate(
        self, batch: dict[str, Any], metric: MeanAveragePrecision
    ) -> list[dict[str, Tensor]]:
        detections = self.model(batch["image"])
        metric.update(
            [{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections],
            batch["eval_target"],
        )
        return detections

    def _log_map(self, stage: str, metric: MeanAveragePrecision) -> None:
        result = metric.compute()  # synchronised across processes by torchmetrics
        self.log_dict(
            {f"{stage}/{name}": result[key] for key, name in COCO_METRICS.items()},
            prog_bar=stage == "val",
        )  # already synchronised by torchmetrics: the same on every process
        if stage == "test" and result["map_per_class"].numel() > 1:
            for c, ap in zip(result["classes"].tolist(), result["map_per_class"].tolist()):
                self.log(f"test/AP/{self.class_names[c]}", ap)
        metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_map)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        category_ids = getattr(self.trainer.datamodule, "category_ids", None) or list(
            range(self.num_classes)
        )
        for image_id, det in zip(batch["image_id"], self._evaluate(batch, self.test_map)):
            # x, y, w, h in float32, as torchmetrics converts them: the written file then scores
            # exactly as the logged metric under pycocotools
            boxes = box_convert(det["boxes"].float(), "xyxy", "xywh").cpu().tolist()
            for box, score, label in zip(boxes, det["scores"].tolist(), det["labels"].tolist()):
                self._results.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[label],
                        "bbox": box,
                        "score": score,
                    }
                )

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)
        results = self._results
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(self.trainer.world_size)]
            dist.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        self._results = []
        if self.trainer.is_global_zero:
            path = self._output_dir(".") / "coco_results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results))
            log.info("wrote %d detections (COCO results format) to %s", len(results), path)

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int) -> list[dict[str, Any]]:
        if batch is None:  # no image of the batch could be read (each one was reported)
            return []
        detections = self.model(batch["image"])
        return [
            {
                "id": i,
                "path": p,
                **{
                    k: d[k].float().cpu() if k != "labels" else d[k].cpu()
                    for k in ("boxes", "scores", "labels")
                },
            }
            for i, p, d in zip(batch["image_id"], batch["path"], detections)
        ]
