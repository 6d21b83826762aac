"""Lightning callbacks that write what ``vtk predict`` computes."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from vtk.data.segmentation import voc_palette
from vtk.drawing import draw_classes, draw_detections, draw_label_map, image_tensor, save

log = logging.getLogger("vtk")


class SegmentationWriter(BasePredictionWriter):
    """Write each predicted label map as ``<output_dir>/<image id>.png``.

    A palette PNG holds the class index per pixel (readable as labels by any tool) and shows
    VOC's colours in an image viewer.
    """

    def __init__(
        self, output_dir: str = "predictions", num_classes: int = 21, draw: bool = True
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.num_classes = num_classes
        self.draw = draw
        self.written = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Sequence[dict[str, Any]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for item in prediction:
            image = Image.fromarray(item["labels"].numpy())
            image.putpalette(voc_palette())  # "L" -> "P": the values stay the class indices
            image.save(self.output_dir / f"{item['id']}.png")
            if self.draw:
                drawn = draw_label_map(image_tensor(item["path"]), item["labels"], self.num_classes)
                save(drawn, self.output_dir / "drawn" / f"{item['id']}.jpg")
            self.written += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(
                "wrote %d label maps to %s%s",
                self.written,
                self.output_dir,
                f" (drawn: {self.output_dir / 'drawn'})" if self.draw else "",
            )


class ClassificationWriter(BasePredictionWriter):
    """Write ``<output_dir>/predictions.csv``: per image its id, path and top-k classes and scores.

    Under DDP each process writes ``predictions-rank<N>.csv``.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        class_names: Sequence[str] | None = None,
        draw: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names) if class_names is not None else None
        self.draw = draw
        self.rows: list[list] = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Sequence[dict[str, Any]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        for item in prediction:
            names = [self.class_names[c] if self.class_names else str(c) for c in item["classes"]]
            row = [item["id"], item["path"]]
            for name, score in zip(names, item["scores"]):
                row += [name, f"{score:.5f}"]
            self.rows.append(row)
            if self.draw and item["path"]:
                drawn = draw_classes(image_tensor(item["path"]), names[:3], item["scores"][:3])
                save(drawn, self.output_dir / "drawn" / f"{Path(item['path']).stem}.jpg")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = (
            "predictions.csv"
            if trainer.world_size == 1
            else f"predictions-rank{trainer.global_rank}.csv"
        )
        k = max((len(r) - 2) // 2 for r in self.rows) if self.rows else 0
        header = ["id", "path"] + [
            f"{what}{i}" for i in range(1, k + 1) for what in ("class", "score")
        ]
        with open(self.output_dir / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(self.rows)
        log.info("wrote predictions for %d images to %s", len(self.rows), self.output_dir / name)


class DetectionWriter(BasePredictionWriter):
    """Write ``<output_dir>/predictions.json`` in COCO's results format — one entry per
    detection: ``image_id`` (the file name without extension), ``file_name``, ``category_id``
    (the dataset's own id), ``category_name``, ``bbox`` (x, y, width, height in the image's
    pixels) and ``score`` — and each image with its detections drawn to ``drawn/``.

    Under DDP each process writes ``predictions-rank<N>.json``.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        draw: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names) if class_names is not None else None
        self.category_ids = list(category_ids) if category_ids is not None else None
        self.draw = draw
        self.results: list[dict[str, Any]] = []
        self.images = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Sequence[dict[str, Any]],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        for item in prediction:
            labels, scores = item["labels"].tolist(), item["scores"].tolist()
            names = self.class_names or [str(i) for i in range(max(labels, default=0) + 1)]
            path = Path(item["path"])
            for (x1, y1, x2, y2), label, score in zip(item["boxes"].tolist(), labels, scores):
                self.results.append(
                    {
                        "image_id": path.stem,
                        "file_name": path.name,
                        "category_id": self.category_ids[label] if self.category_ids else label,
                        "category_name": names[label],
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(score, 5),
                    }
                )
            if self.draw:
                drawn = draw_detections(image_tensor(path), item["boxes"], labels, scores, names)
                save(drawn, self.output_dir / "drawn" / f"{path.stem}.jpg")
            self.images += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = (
            "predictions.json"
            if trainer.world_size == 1
            else f"predictions-rank{trainer.global_rank}.json"
        )
        (self.output_dir / name).write_text(json.dumps(self.results))
        log.info(
            "wrote %d detections on %d images (COCO results format) to %s",
            len(self.results),
            self.images,
            self.output_dir / name,
        )
