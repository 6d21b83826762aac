"""Shared fixtures: the `vtk` command in this process or in a subprocess (always in the test's
own temporary folder), and small datasets written in the real on-disk formats, no network."""

from __future__ import annotations

import os
import subprocess
import sys

# before anything imports albumentations (it would check PyPI) or torch.hub (no downloads)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path

import numpy as np
import pytest
from helpers import QUIET, VTK
from PIL import Image

from vtk.drawing import voc_palette


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Demo data, torch.hub's cache and vtk's go to a per-session temporary folder."""
    root = tmp_path_factory.mktemp("vtk_home")
    os.environ["VTK_DATA_DIR"] = str(root / "data")
    os.environ["TORCH_HOME"] = str(root / "torch")
    os.environ["VTK_CACHE_DIR"] = str(root / "cache")  # checkpoints of the shipped weights
    os.environ.pop("VTK_WEIGHTS_DIR", None)  # only the weights shipped in the repository


def write_pair(
    image_path: Path, mask_path: Path, h: int, w: int, seed: int, num_classes: int = 3
) -> None:
    """A random RGB JPEG and a palette PNG mask of class blocks with a 255 border."""
    rng = np.random.default_rng(seed)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image_path)
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2, : w // 2] = rng.integers(1, num_classes)
    mask[h // 2 :, w // 2 :] = num_classes - 1
    mask[h // 2, :] = 255
    m = Image.fromarray(mask)
    m.putpalette(voc_palette())
    m.save(mask_path)


def write_voc(root: Path, splits: dict[str, list[str]], h: int = 40, w: int = 48) -> Path:
    """A Pascal VOC 2012 layout with the given split lists."""
    seed = 0
    written = set()
    for split, ids in splits.items():
        for i in ids:
            if i not in written:
                write_pair(
                    root / "JPEGImages" / f"{i}.jpg",
                    root / "SegmentationClass" / f"{i}.png",
                    h,
                    w,
                    seed,
                )
                written.add(i)
                seed += 1
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def make_voc():
    """``make_voc(root, {"train": ids, ...})`` writes a VOC layout (see :func:`write_voc`)."""
    return write_voc


@pytest.fixture
def make_pair():
    """``make_pair(image_path, mask_path, h, w, seed)`` writes one image and its mask."""
    return write_pair


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return write_voc(
        tmp_path / "VOC2012",
        {"train": [f"2007_{i:06d}" for i in range(6)], "val": [f"2008_{i:06d}" for i in range(3)]},
    )


@pytest.fixture
def vtk_log(caplog):
    """Records of the `vtk` logger at INFO and above."""
    caplog.set_level("INFO", logger="vtk")
    return caplog


@pytest.fixture
def run_vtk(monkeypatch, tmp_path):
    """``run_vtk("fit", "demo_classification", ...)``: the `vtk` command in this process, in
    ``tmp_path`` (or ``cwd=``); returns 0, the exit code, or the exit message."""
    from vtk.cli import main

    def run(*args: object, cwd: Path | None = None) -> int | str:
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.setattr(sys, "argv", ["vtk", *(str(a) for a in args)])
        try:
            main()
        except SystemExit as e:
            return e.code if e.code is not None else 0
        return 0

    return run


@pytest.fixture
def vtk_process(tmp_path):
    """``vtk_process("fit", ...)``: the installed `vtk` command in a subprocess, as a user runs
    it, in ``tmp_path`` (or ``cwd=``); ``launcher`` goes in front (torchrun)."""

    def run(
        *args: object, cwd: Path | None = None, timeout: int = 600, launcher: tuple = ()
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*launcher, VTK, *(str(a) for a in args)], cwd=cwd or tmp_path, capture_output=True,
            text=True, timeout=timeout, env=os.environ.copy(),
        )  # fmt: skip

    return run


@pytest.fixture
def fit_demo(run_vtk, tmp_path):
    """``fit_demo("demo_classification", *overrides, steps=2)``: a short `vtk fit` of a demo
    recipe in ``tmp_path``; returns its last checkpoint."""

    def fit(recipe: str, *overrides: object, steps: int = 2) -> Path:
        code = run_vtk(
            "fit", recipe, "--trainer.max_steps", steps, "--trainer.limit_val_batches", 1,
            "--trainer.log_every_n_steps", 1, *QUIET, *overrides,
        )  # fmt: skip
        assert code == 0, code
        return max(tmp_path.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)

    return fit
