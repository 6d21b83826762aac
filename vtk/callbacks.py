"""Lightning callbacks that write what ``vtk predict`` computes."""

from __future__ import annotations

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
