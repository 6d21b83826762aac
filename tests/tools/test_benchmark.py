"""tools/benchmark.py runs and prints its ratios (tiny sizes: the figures are the README's)."""

from __future__ import annotations

import runpy
import sys

import pytest
from helpers import ROOT


def _run(monkeypatch, capsys, *args: str) -> str:
    main = runpy.run_path(str(ROOT / "tools" / "benchmark.py"), run_name="tool")["main"]
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *args])
    main()
    return capsys.readouterr().out


@pytest.mark.parametrize("arch", ["resnet50", "deeplabv3_resnet101", "fcos_resnet50_fpn"])
def test_inference_prints_a_ratio_against_torchvision(monkeypatch, capsys, arch) -> None:
    out = _run(monkeypatch, capsys, "inference", "--arch", arch, "--batch", "1", "--size", "64",
               "--steps", "1", "--warmup", "0")  # fmt: skip
    assert "inference" in out and "ratio vtk fast/torchvision = " in out and "GFLOP/s" in out


def test_coco_eval_backends_and_per_class_modes_agree(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "eval", "--images", "20")
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("mAP:"))
    values = [float(part.split()[-1]) for part in line.split(":", 1)[1].split(",")]
    assert len(values) >= 3 and len(set(values)) == 1
    diff = next(ln for ln in out.splitlines() if "per-class AP, vtk's vs" in ln)
    assert float(diff.split()[-1]) < 1e-6


def test_data_benchmark_builds_each_demo_recipe_and_trains_a_step(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "data", "--workers", "0", "--steps", "2")
    lines = [ln for ln in out.splitlines() if "ratio data/model" in ln]
    assert [ln.split(":")[0] for ln in lines] == [
        "demo_classification", "demo_segmentation", "demo_detection"
    ]  # fmt: skip


@pytest.mark.slow  # each mode in a process of its own
def test_slide_prints_time_memory_and_tta_ratios(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "slide", "--height", "64", "--width", "96", "--window", "64",
               "--stride", "32", "--steps", "1", "--warmup", "0", "--tta")  # fmt: skip
    assert "ratio slide/whole = " in out and "ratio whole+TTA/whole = " in out
    memory = next(ln for ln in out.splitlines() if "peak resident memory" in ln)
    values = [float(part.split()[-2]) for part in memory.split(":", 1)[1].split(",")]
    assert len(values) == 3 and all(v >= 0 for v in values)  # MiB of each mode's own process
    assert "TTA (6 scales x flip) cost factor = " in out


def test_grouping_benchmark_prints_padding_and_step_ratio(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "grouping", "--images", "8", "--batch", "2", "--size", "32",
               "--max_size", "48", "--steps", "1", "--warmup", "0")  # fmt: skip
    shares = {ln.split()[0]: float(ln.split()[1].rstrip("%")) for ln in out.splitlines()
              if ln.strip().startswith(("mixed", "grouped")) and ln.strip().endswith("%")}  # fmt: skip
    assert shares["grouped"] < shares["mixed"]
    assert "ratio grouped/mixed = " in out


def test_decode_benchmark_compares_draft_with_whole_and_the_model(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "decode", "--images", "2", "--width", "640", "--height", "480",
               "--size", "64", "--max_size", "96", "--batch", "1", "--steps", "1", "--warmup", "0")  # fmt: skip
    assert "decode whole -> 640x480" in out and "decode draft -> 160x120" in out
    assert "ratio draft/whole decode rate = " in out and "images/s; one loader process" in out


def test_onnx_benchmark_times_onnxruntime_against_the_fast_path(monkeypatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    out = _run(monkeypatch, capsys, "onnx", "--batch", "1", "--size", "32", "--steps", "1",
               "--warmup", "0")  # fmt: skip
    assert "ratio onnxruntime/PyTorch fast = " in out
    diff = float(out.split("max abs difference ")[1].split(",")[0])
    assert diff < 1e-3


def test_train_prints_each_switch_against_torchvision(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "train", "--batch", "2", "--size", "64", "--steps", "1",
               "--warmup", "0", "--bf16")  # fmt: skip
    titles = [ln for ln in out.splitlines() if "train step" in ln]
    assert [t.split(" train step")[0] for t in titles] == [
        "ResNet-50 classification", "DeepLabV3-ResNet50 (OS 8, aux)", "FCOS-ResNet50-FPN",
    ]  # fmt: skip
    for variant in ("vtk", "vtk channels_last", "vtk cl+bf16"):
        assert out.count(f"ratio {variant}/torchvision = ") == 3, variant


def test_data_benchmark_takes_a_recipe_and_its_overrides(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "data", "--recipe", "demo_segmentation", "--workers", "0",
               "--steps", "2", "--data.batch_size", "2")  # fmt: skip
    (line,) = [ln for ln in out.splitlines() if "ratio data/model" in ln]
    assert line.startswith("demo_segmentation: ")


def test_epochs_times_each_switch_of_a_recipe(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    out = _run(monkeypatch, capsys, "epochs", "--recipe", "demo_segmentation", "--device", "cpu",
               "--workers", "0", "--limit", "2", "--epochs", "1", "--data.batch_size", "2",
               "--data.crop_size", "64")  # fmt: skip
    for name in ("fp32", "fp32 + channels_last", "bf16", "bf16 + channels_last"):
        assert f"  {name} " in out and "ratio to fp32 = " in out, name


def test_stream_benchmark_writes_a_stream_and_times_both_loaders(monkeypatch, capsys) -> None:
    out = _run(monkeypatch, capsys, "stream", "--recipe", "demo_segmentation", "--workers", "0",
               "--steps", "2", "--rounds", "2", "--data.batch_size", "4")  # fmt: skip
    assert "demo_segmentation: wrote 400 training samples in " in out
    line = next(ln for ln in out.splitlines() if "ratio stream/files = " in ln)
    assert float(line.rsplit("= ", 1)[1]) > 0
