"""``vtk export CKPT --format onnx``: the folded network with its preprocessing in the ONNX
metadata, checked with onnxruntime; ``vtk.load("model.onnx")`` predicts as the checkpoint does,
also where torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vtk
from vtk.errors import ConfigError
from vtk.export import export_onnx
from vtk.models import Classifier, ResNet
from vtk.tasks import ClassificationTask

CASES = {
    "classification": ("demo_classification", ("--data.image_size", "32"), "*.png"),
    "segmentation": ("demo_segmentation", ("--data.crop_size", "64"), "*.jpg"),
    "detection": ("demo_detection", ("--model.init_args.model.init_args.min_size", "96",
                                     "--model.init_args.model.init_args.max_size", "96"), "*.jpg"),
    "multilabel": ("demo_multilabel", ("--data.image_size", "32", "--data.resize_size", "32",
                                       "--model.threshold", "0.45"), "*.jpg"),
}  # fmt: skip
#: where a recipe's demo images are (the multi-label demo reads the detection demo's)
DEMO_DATA = {"demo_multilabel": "demo_detection"}


@pytest.mark.parametrize("task", list(CASES))
def test_export_round_trip(task, fit_demo, run_vtk, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    recipe, extra, pattern = CASES[task]
    ckpt = fit_demo(recipe, *extra)
    onnx_path = tmp_path / "m.onnx"
    assert run_vtk("export", ckpt, "--format", "onnx", "--out", onnx_path) == 0
    out = capsys.readouterr().out
    assert "onnxruntime matches PyTorch" in out and "BatchNorm folded" in out
    deployed, checkpoint = vtk.load(onnx_path), vtk.load(ckpt, device="cpu")
    assert type(deployed).__name__ == "OnnxPredictor" and deployed.task == task
    assert deployed.class_names == checkpoint.class_names
    demo = Path(os.environ["VTK_DATA_DIR"]) / DEMO_DATA.get(recipe, recipe)
    found = sorted(demo.rglob(pattern))
    paths = [p for p in found if "val" in p.parts][:3] or found[:3]  # segmentation: no val/
    assert len(paths) == 3
    answers = list(zip(deployed.predict(paths), checkpoint.predict(paths)))
    for a, b in answers:
        if task in ("classification", "multilabel"):
            assert a["names"] == b["names"]
            np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        elif task == "segmentation":
            assert np.array_equal(a["labels"], b["labels"])
        else:
            assert a["labels"][:10] == b["labels"][:10]
            assert a["category_ids"][:10] == b["category_ids"][:10]
            np.testing.assert_allclose(a["scores"][:10], b["scores"][:10], atol=1e-4)
    if task == "multilabel":  # every class at or above the checkpoint's threshold, best first
        assert deployed.threshold == 0.45 and any(a["labels"] for a, _ in answers)
        assert all(s >= 0.45 for a, _ in answers for s in a["scores"])
        assert all(a["scores"] == sorted(a["scores"], reverse=True) for a, _ in answers)


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_onnx_predictor_runs_without_torch(task, fit_demo, run_vtk, tmp_path) -> None:
    """A deployment with onnxruntime, numpy and Pillow: torch's import is blocked."""
    pytest.importorskip("onnxruntime")
    recipe, extra, pattern = CASES[task]
    ckpt = fit_demo(recipe, *extra)
    assert run_vtk("export", ckpt, "--out", tmp_path / "m.onnx") == 0
    demo = Path(os.environ["VTK_DATA_DIR"]) / DEMO_DATA.get(recipe, recipe) / "val"
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted(demo.rglob(pattern))[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG truncated")
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # import torch now fails\n"
        "import vtk\n"
        f"m = vtk.load({str(tmp_path / 'm.onnx')!r})\n"
        f"out = [r['names'] for r in m.predict_folder({str(images)!r}, batch_size=2)]\n"
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    expected = [r["names"] for r in vtk.load(ckpt, device="cpu").predict_folder(
        images, num_workers=0, progress=False)]  # fmt: skip
    assert names == expected and len(names) == 3


def test_an_operator_onnx_cannot_express_is_named(tmp_path) -> None:
    pytest.importorskip("onnx")
    task = ClassificationTask(Classifier(ResNet("resnet18", deform="v2", deform_stages=[3]), 4))
    with pytest.raises(
        ConfigError, match=r"cannot express the operator torchvision::deform_conv2d"
    ):
        export_onnx(task, tmp_path / "m.onnx", size=32)


@pytest.mark.parametrize("shape", [(97, 131), (480, 640), (31, 40)])
def test_the_onnx_runtime_resizes_as_the_pytorch_pipeline(shape) -> None:
    """With OpenCV the deployed preparation is the PyTorch pipeline's resize exactly (same
    sizes, same pixels); Pillow's stand-in gives the same size and close pixels."""
    import albumentations as A

    from vtk.deploy import resize_shorter_side

    y, x = np.mgrid[: shape[0], : shape[1]]
    smooth = 127 + 100 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None] * [1, 0.5, -1]
    image = smooth.astype(np.uint8)  # a photo's smoothness (on noise the filters differ most)
    expected = A.SmallestMaxSize(max_size=64, area_for_downscale="image")(image=image)["image"]
    assert np.array_equal(resize_shorter_side(image, 64, use_opencv=True), expected)
    pillow = resize_shorter_side(image, 64, use_opencv=False)
    assert pillow.shape == expected.shape
    assert np.abs(pillow.astype(int) - expected.astype(int)).mean() < 8


def test_a_cards_metrics_are_percentages_but_the_threshold_a_probability(tmp_path) -> None:
    from vtk.export import summary_metrics

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,test/F1,test/IoU/vessel,test/loss,test/threshold\n"
                        "0,0,0.81567,0.7,0.25,0.53\n")  # fmt: skip
    assert summary_metrics(csv_path) == {"F1": 81.57, "threshold": 0.53}
