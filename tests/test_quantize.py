"""vtk.quantize (``vtk export --int8``): the INT8 model is written with its accuracy cost on
held-out images, keeps its first and last layers in fp32, and predicts through vtk.load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import vtk

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    "recipe, extra", [("demo_classification", ("--data.image_size", "32")),
                      ("demo_segmentation", ("--data.crop_size", "64")),
                      ("demo_multilabel", ("--data.image_size", "32", "--data.resize_size", "32"))],
)  # fmt: skip
def test_int8_export_reports_what_it_cost(
    recipe, extra, fit_demo, run_vtk, tmp_path, capsys
) -> None:
    import onnx

    ckpt = fit_demo(recipe, *extra, steps=2)
    val = (
        Path(os.environ["VTK_DATA_DIR"])
        / {
            "demo_classification": "demo_classification/val",
            "demo_segmentation": "demo_segmentation/JPEGImages",
            "demo_multilabel": "demo_detection/val",  # its demo reads the detection demo's images
        }[recipe]
    )
    out = tmp_path / "m_int8.onnx"
    assert run_vtk("export", ckpt, "--int8", "--calib", val, "--calib_images", "8",
                   "--eval_images", "12", "--out", out) == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["calibration_images"] == 8 and report["eval_images"] == 12
    assert len(report["kept_in_fp32"]) == 2  # the first conv and the last layer
    if recipe == "demo_classification":
        assert 0 <= report["top1_agreement"] <= 1 and "top-1 agreement with fp32" in printed
        assert "top1_int8" in report  # the demo's val folders are its class names
    elif recipe == "demo_multilabel":  # the whole answer: the classes at the threshold
        assert 0 <= report["answer_agreement"] <= 1 and "top1_int8" not in report
    else:
        assert report["pixel_agreement"] > 0.5 and "of the pixels agree with fp32" in printed
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    assert first_conv.name == report["kept_in_fp32"][0]
    assert (tmp_path / "m_int8_fp32.onnx").is_file()
    int8 = vtk.load(out)
    images = sorted(p for p in val.rglob("*") if p.suffix in (".png", ".jpg"))[:2]
    assert len(int8.predict(images)) == 2


def test_int8_needs_calibration_images_and_refuses_detection(fit_demo, run_vtk, tmp_path) -> None:
    message = run_vtk("export", tmp_path / "x.ckpt", "--int8")
    assert message == "vtk: error: --int8 needs images to calibrate on: --calib DIR."
    ckpt = fit_demo("demo_detection", "--model.init_args.model.init_args.min_size", "96",
                    "--model.init_args.model.init_args.max_size", "96", steps=1)  # fmt: skip
    message = run_vtk("export", ckpt, "--int8", "--calib", tmp_path, "--out", tmp_path / "d.onnx")
    assert (
        isinstance(message, str)
        and "INT8 export is for classification, multi-label and segmentation" in message
    )
    # each refused before anything is exported
    seg = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=1)
    (tmp_path / "empty").mkdir()
    for calib, reason in ((tmp_path / "nowhere", "does not exist"),
                          (tmp_path / "empty", "holds no images")):  # fmt: skip
        message = run_vtk("export", seg, "--int8", "--calib", calib, "--out", tmp_path / "s.onnx")
        assert isinstance(message, str) and reason in message, message
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("d*"))
