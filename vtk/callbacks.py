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

log = logging.getLogger("vtk")


class SegmentationWriter(BasePredictionWriter):
    """Write each predicted label map as ``<output_dir>/<image id>.png``.

    A palette PNG holds the class index per pixel (readable as labels by any tool) and shows
    VOC's colours in an image viewer.
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
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
            self.written += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("wrote %d label maps to %s", self.written, self.output_dir)


class ClassificationWriter(BasePredictionWriter):
    """Write ``<output_dir>/predictions.csv``: per image its id, path and top-k classes and scores.

    Under DDP each process writes ``predictions-rank<N>.csv``.
    """

    def __init__(
        self, output_dir: str = "predictions", class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names) if class_names is not None else None
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
    """Write ``<output_dir>/predictions.json``: per image its file, and its detections as boxes
    (x1, y1, x2, y2 in the image's pixels), scores, labels and class names.

    Under DDP each process writes ``predictions-rank<N>.json``.
    """

    def __init__(
        self, output_dir: str = "predictions", class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names) if class_names is not None else None
        self.items: list[dict[str, Any]] = []

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
            labels = item["labels"].tolist()
            self.items.append(
                {
                    "file": Path(item["path"]).name,
                    "boxes": [[round(v, 2) for v in box] for box in item["boxes"].tolist()],
                    "scores": [round(s, 4) for s in item["scores"].tolist()],
                    "labels": labels,
                    "names": [self.class_names[i] for i in labels]
                    if self.class_names
                    else [str(i) for i in labels],
                }
            )

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = (
            "predictions.json"
            if trainer.world_size == 1
            else f"predictions-rank{trainer.global_rank}.json"
        )
        (self.output_dir / name).write_text(json.dumps(self.items, indent=1))
        log.info("wrote detections for %d images to %s", len(self.items), self.output_dir / name)
