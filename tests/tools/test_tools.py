"""The scripts in tools/: ONNX export (checked by onnxruntime), the augmented-sample grid,
log curves — each on the demo recipes, and their bad inputs."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vtk.cli import main as vtk_main
from vtk.errors import ConfigError
from vtk.export import export_onnx
from vtk.models import Classifier, ResNet

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str):
    return runpy.run_path(str(ROOT / "tools" / f"{name}.py"), run_name="tool")["main"]


def _fit(monkeypatch, tmp_path: Path, recipe: str, *extra: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv",
        ["vtk", "fit", str(ROOT / "recipes" / recipe), "--trainer.max_steps", "2",
         "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.log_every_n_steps", "1", "--data.num_workers", "0", *extra],
    )  # fmt: skip
    vtk_main()
    return next(tmp_path.rglob("last.ckpt"))


@pytest.mark.parametrize(
    "recipe,extra,size",
    [
        ("demo_classification.yaml", ("--data.image_size", "32"), 32),
        ("demo_segmentation.yaml", ("--data.crop_size", "64"), 64),
        ("demo_detection.yaml", ("--model.init_args.model.init_args.min_size", "96",
                                 "--model.init_args.model.init_args.max_size", "96"), 96),
    ],
    ids=["classification", "segmentation", "detection"],
)  # fmt: skip
def test_export_onnx_matches_onnxruntime(
    monkeypatch, tmp_path, capsys, recipe, extra, size
) -> None:
    pytest.importorskip("onnxruntime")
    ckpt = _fit(monkeypatch, tmp_path, recipe, *extra)
    tool("export_onnx")([str(ckpt), "--out", str(tmp_path / "m.onnx"), "--size", str(size)])
    out = capsys.readouterr().out
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert "onnxruntime matches PyTorch" in out


def test_an_operator_onnx_cannot_express_is_named(tmp_path) -> None:
    pytest.importorskip("onnx")
    model = Classifier(ResNet("resnet18", deform="v2", deform_stages=[3]), 4)
    with pytest.raises(
        ConfigError, match=r"cannot express the operator torchvision::deform_conv2d"
    ):
        export_onnx(model, "classification", tmp_path / "m.onnx", size=32)


def test_plot_logs_draws_a_run(monkeypatch, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    _fit(monkeypatch, tmp_path, "demo_classification.yaml", "--data.image_size", "32")
    run = next(tmp_path.rglob("metrics.csv")).parent
    tool("plot_logs")([str(run), "--out", str(tmp_path / "curves.png")])
    assert Image.open(tmp_path / "curves.png").size == (1200, 450)
    with pytest.raises(SystemExit, match="does not exist"):
        tool("plot_logs")([str(tmp_path / "nope")])


@pytest.mark.parametrize("recipe", ["demo_detection", "demo_segmentation", "demo_classification"])
def test_browse_dataset_writes_a_grid(tmp_path, recipe) -> None:
    out = tmp_path / "grid.png"
    tool("browse_dataset")([str(ROOT / "recipes" / f"{recipe}.yaml"), "--n", "4", "--tile", "64",
                            "--out", str(out), "--data.num_workers", "0"])  # fmt: skip
    grid = Image.open(out)
    assert grid.size == (4 * 64 + 5 * 2, 64 + 2 * 2)  # four tiles in a row, 2 px apart
    assert torch.tensor(list(grid.getdata())).float().std() > 10  # drawn, not blank


def test_browse_dataset_with_missing_data_is_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"browse_dataset: error: Pascal VOC 2012 not found"):
        tool("browse_dataset")([str(ROOT / "recipes" / "deeplab_resnet101_aspp.yaml"),
                                "--data.root", str(tmp_path / "VOC2012")])  # fmt: skip


def test_tensorboard_logger_from_the_command_line(monkeypatch, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    _fit(monkeypatch, tmp_path, "demo_classification.yaml", "--data.image_size", "32",
         "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
         "--trainer.logger.init_args.save_dir", "tb")  # fmt: skip
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and events[0].parent.parent.name == "demo_classification"
