"""Lightning callbacks that write what ``vtk predict`` computes: each task's ``predict_step``
results (see the tasks' docstrings), one file per image or one file per run, and each image
with its prediction drawn to ``drawn/``."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from PIL import Image

from vtk.data.io import read_image
from vtk.drawing import (
    DRAW_SCORE,
    draw_classes,
    draw_detections,
    draw_label_map,
    save,
    voc_palette,
)

log = logging.getLogger("vtk")


def image_tensor(path: str | Path) -> torch.Tensor:
    """The image at ``path`` as a ``(3, H, W)`` uint8 tensor (any mode converted to RGB)."""
    return torch.from_numpy(np.ascontiguousarray(read_image(path))).permute(2, 0, 1)


class PredictionWriter(BasePredictionWriter):
    """Calls :meth:`write` for every image's result, then :meth:`finish` once (per process)."""

    def __init__(self, output_dir: str = "predictions", draw: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.draw = draw

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
            self.write(item)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.finish(trainer)

    def write(self, item: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, trainer: Trainer) -> None:
        pass

    def drawn_path(self, item: dict[str, Any]) -> Path:
        return self.output_dir / "drawn" / f"{Path(item['path']).stem}.jpg"

    @staticmethod
    def run_file(trainer: Trainer, name: str, suffix: str) -> str:
        """``name.suffix``, or ``name-rank<N>.suffix`` for each process under DDP."""
        return (
            f"{name}{suffix}"
            if trainer.world_size == 1
            else f"{name}-rank{trainer.global_rank}{suffix}"
        )


class SegmentationWriter(PredictionWriter):
    """Each class map as ``<output_dir>/<image id>.png``: a palette PNG holds the class index per
    pixel (readable as labels by any tool) and shows VOC's colours in an image viewer."""

    def __init__(
        self,
        output_dir: str = "predictions",
        num_classes: int = 21,
        draw: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(output_dir, draw)
        self.num_classes, self.class_names = num_classes, class_names
        self.written = 0

    def write(self, item: dict[str, Any]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(item["labels"])
        if image.mode == "L":
            image.putpalette(voc_palette())  # "L" -> "P": the values stay the class indices
        image.save(self.output_dir / f"{item['id']}.png")
        if self.draw:
            labels = torch.from_numpy(item["labels"].astype("int64"))
            save(
                draw_label_map(
                    image_tensor(item["path"]),
                    labels,
                    self.num_classes,
                    class_names=self.class_names,
                ),
                self.drawn_path(item),
            )
        self.written += 1

    def finish(self, trainer: Trainer) -> None:
        if trainer.is_global_zero:
            drawn = f" (drawn: {self.output_dir / 'drawn'})" if self.draw else ""
            log.info("wrote %d label maps to %s%s", self.written, self.output_dir, drawn)


class ClassificationWriter(PredictionWriter):
    """``<output_dir>/predictions.csv``: per image its id, path and top-k classes and scores."""

    def __init__(self, output_dir: str = "predictions", draw: bool = True) -> None:
        super().__init__(output_dir, draw)
        self.rows: list[list] = []

    def write(self, item: dict[str, Any]) -> None:
        row = [item["id"], item["path"]]
        for name, score in zip(item["names"], item["scores"]):
            row += [name, f"{score:.5f}"]
        self.rows.append(row)
        if self.draw and item["path"]:
            drawn = draw_classes(image_tensor(item["path"]), item["names"][:3], item["scores"][:3])
            save(drawn, self.drawn_path(item))

    def finish(self, trainer: Trainer) -> None:
        path = self.output_dir / self.run_file(trainer, "predictions", ".csv")
        k = max((len(r) - 2) // 2 for r in self.rows) if self.rows else 0
        header = ["id", "path"] + [
            f"{what}{i}" for i in range(1, k + 1) for what in ("class", "score")
        ]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(self.rows)
        log.info("wrote predictions for %d images to %s", len(self.rows), path)


class DetectionWriter(PredictionWriter):
    """``<output_dir>/predictions.json`` in COCO's results format — one entry per detection:
    ``image_id`` (the file name without extension), ``file_name``, ``category_id`` (the
    dataset's own id), ``category_name``, ``bbox`` (x, y, width, height in the image's pixels)
    and ``score``."""

    def __init__(
        self,
        output_dir: str = "predictions",
        class_names: Sequence[str] | None = None,
        draw: bool = True,
        draw_score: float = DRAW_SCORE,
    ) -> None:
        super().__init__(output_dir, draw)
        self.class_names = list(class_names or [])
        self.draw_score = draw_score
        self.results: list[dict[str, Any]] = []
        self.images = 0
        self.undrawn: list[float] = []  # the best score of each image drawn without a box

    def write(self, item: dict[str, Any]) -> None:
        path = Path(item["path"])
        boxes = item["boxes"].tolist()
        for (x1, y1, x2, y2), category, name, score in zip(
            boxes, item["category_ids"], item["names"], item["scores"]
        ):
            self.results.append(
                {
                    "image_id": path.stem,
                    "file_name": path.name,
                    "category_id": category,
                    "category_name": name,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(score, 5),
                }
            )
        if self.draw:
            names = self.class_names or [str(i) for i in range(max(item["labels"], default=0) + 1)]
            drawn = draw_detections(
                image_tensor(path), torch.from_numpy(item["boxes"]), item["labels"],
                item["scores"], names, self.draw_score,
            )  # fmt: skip
            save(drawn, self.drawn_path(item))
            if not any(s >= self.draw_score for s in item["scores"]):
                self.undrawn.append(max(item["scores"], default=0.0))
        self.images += 1

    def finish(self, trainer: Trainer) -> None:
        path = self.output_dir / self.run_file(trainer, "predictions", ".json")
        path.write_text(json.dumps(self.results))
        log.info(
            "wrote %d detections on %d images (COCO results format) to %s",
            len(self.results), self.images, path,
        )  # fmt: skip
        if self.undrawn:
            log.info(
                "%d of %d drawn images show no box: no detection on them scores %g or more "
                "(their best: %.3f). Every detection is in %s; draw lower ones with "
                "--model.draw_score %g",
                len(self.undrawn), self.images, self.draw_score, max(self.undrawn), path.name,
                max(0.01, math.floor(max(self.undrawn) * 20) / 20),
            )  # fmt: skip


class Curves(Callback):
    """Keeps ``curves.png`` (training losses, learning rate, headline validation metrics) in the
    run folder of a CSV-logged fit: redrawn after each validation and at the end of fit."""

    def _draw(self, trainer: Trainer) -> None:
        from lightning.pytorch.loggers import CSVLogger

        from vtk.curves import write_curves

        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, CSVLogger):
            return
        logger.save()  # the rows logged so far, on disk
        try:
            write_curves(Path(logger.log_dir))
        except (OSError, ValueError) as e:  # a drawing never stops a run
            logging.getLogger("vtk").warning("curves.png not drawn: %s", e)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._draw(trainer)


def fit_summary(trainer: Trainer) -> str:
    """What ``vtk fit`` prints at its end: the run folder, the best checkpoint and its metric,
    the last one, and the commands that use them."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    # not trainer.log_dir: that broadcasts, and this runs on rank 0 alone
    logger = trainer.logger
    folder = getattr(logger, "log_dir", None) or trainer.default_root_dir
    steps, epochs = trainer.global_step, trainer.current_epoch
    lines = [f"fit done ({steps} step{'s' * (steps != 1)}, {epochs} epoch{'s' * (epochs != 1)}). "
             f"Run folder: {folder}"]  # fmt: skip
    files = [f for f in ("config.yaml", "metrics.csv", "curves.png") if (Path(folder) / f).exists()]
    if files:
        lines[0] += f" ({', '.join(files)})"
    best = None
    for cb in trainer.callbacks:
        if not isinstance(cb, ModelCheckpoint) or not cb.best_model_path:
            continue
        if cb.monitor:
            score = cb.best_model_score
            value = f"{cb.monitor} {float(score):.4f}" if score is not None else "no score"
            lines.append(f"  best: {cb.best_model_path} ({value})")
            best = best or cb.best_model_path
        else:
            lines.append(f"  last: {cb.best_model_path} (vtk fit ... --ckpt_path last resumes)")
            best = best or cb.best_model_path
    if best:
        lines += [
            f"  next: vtk test {best}",
            f"        vtk predict {best} path/to/images",
            f"        vtk export {best} --format onnx",
            f"        vtk serve {best}",
        ]
    return "\n".join(lines)
