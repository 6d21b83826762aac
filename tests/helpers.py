"""Constants the tests share (importable: pytest puts tests/ on the path, see pyproject.toml)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image

from vtk.models.attention import ATTENTION
from vtk.models.layers import DEFORM_CONV

#: the repository (tests read its recipes and tools by absolute path; they never write here)
ROOT = Path(__file__).resolve().parents[1]
#: the installed `vtk` command beside this Python
VTK = str(Path(sys.executable).with_name("vtk"))
#: a quiet, quick run: no progress bar, no model summary, loaders in the main process
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--data.num_workers", "0")  # fmt: skip


def quiet_trainer(root: Path, **kwargs: Any) -> Trainer:
    """A CPU Trainer with no logger, checkpoints, progress bar or summary (``kwargs`` win),
    whose run folder is ``root`` (a test's ``tmp_path``: what ``vtk test`` writes lands there,
    not in the working directory)."""
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
    )  # fmt: skip
    return Trainer(**{**defaults, **kwargs})


def write_sideways_jpeg(path, orientation: int = 6) -> None:
    """A 64x48 JPEG stored sideways, with a white block at its stored top-left, whose EXIF tag
    says: shown rotated 90 degrees clockwise (a phone held upright)."""
    a = np.zeros((48, 64, 3), np.uint8)
    a[:16, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, exif=exif, quality=95)


#: the plug-in matrix: one small variant per backbone family (and block type), with an input
#: size that suits it, and every plug-in kind (built from the registries)
FAMILIES = {  # one small variant per family (and block type), with an input size that suits it
    "resnet18": 64,
    "resnet50": 64,
    "resnext50_32x4d": 64,
    "resnet20": 32,  # CIFAR
    "vgg11_bn": 64,
    "vgg16_c": 64,
    "densenet121": 64,
}
PLUGINS = {
    "none": {},
    **{f"attention={name}": {"attention": name} for name in ATTENTION},
    **{f"deform={v}": {"deform": v, "deform_stages": [1, 2]} for v in DEFORM_CONV},
    "non_local": {"non_local": {1: [0], 2: [0]}},
    "blur_pool": {"blur_pool": 3},
    "blur_pool_5": {"blur_pool": 5},
    "stn": {"stn": True},
}


def write_roboflow_yolo(root, polygons: bool = False):
    """A Roboflow "YOLO" export: data.yaml in the set's root, whose entries say ``../``; each
    split's images/ and labels/ (boxes, or the same boxes as 4-point polygons)."""
    boxes = {
        "a": [(0, 0.5, 0.5, 0.25, 0.25)],
        "b": [(1, 0.3, 0.4, 0.2, 0.3), (0, 0.7, 0.7, 0.2, 0.2)],
        "c": [],
    }
    for split in ("train", "valid", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir()
        for name, objects in boxes.items():
            Image.new("RGB", (80, 60), (40, 90, 160)).save(root / split / "images" / f"{name}.jpg")
            lines = []
            for k, cx, cy, w, h in objects:
                if polygons:
                    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
                    lines.append(f"{k} {x1} {y1} {x2} {y1} {x2} {y2} {x1} {y2}")
                else:
                    lines.append(f"{k} {cx} {cy} {w} {h}")
            (root / split / "labels" / f"{name}.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\n"
        "names: ['cell', 'platelet']\n"
    )
    return root / "data.yaml"


class SeenImages(Callback):
    """Records which training images each rank trains on (for resume tests): every image of a
    set whose images are each one uniform grey level (crops, flips and normalisation keep
    it), as ``<global step> <grey level>`` lines in ``folder/seen_rank<R>.txt``; waits
    ``VTK_TEST_STEP_SLEEP`` seconds per batch so a test can stop the run mid-epoch."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, i: int) -> None:
        import os
        import time

        images = (batch["image"] if isinstance(batch, dict) else batch[0]).float()
        # a normalised grey level g: (g / 255 - mean_c) / std_c per channel -> g, exactly
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        grey = ((images.cpu() * std + mean) * 255).mean(dim=(1, 2, 3)).round().int().tolist()
        with open(self.folder / f"seen_rank{trainer.global_rank}.txt", "a") as f:
            f.writelines(f"{trainer.global_step} {g}\n" for g in grey)
        time.sleep(float(os.environ.get("VTK_TEST_STEP_SLEEP", "0")))
