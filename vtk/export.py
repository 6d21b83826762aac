"""ONNX export of a trained checkpoint, checked against onnxruntime when it is installed.

``vtk export CKPT --format onnx`` exports the fast path's network (BatchNorm folded) and
writes, into the ONNX file's metadata, what a deployment needs to prepare images and read the
outputs (``vtk.task``, ``vtk.input_spec``, ``vtk.class_names``, ``vtk.category_ids``,
``vtk.top_k``, ``vtk.size_divisor``): :class:`vtk.deploy.OnnxPredictor` (``vtk.load("model.onnx")``)
runs it with onnxruntime, numpy and Pillow only.

Classification and segmentation models take ``image`` (N, 3, H, W, normalised as in
training; batch and size dynamic) and give ``logits`` (N, classes) or (N, classes, H, W).
Detectors (torchvision's export path) take one ``image`` (3, H, W) in [0, 1] and give
``boxes`` (x1, y1, x2, y2 in its pixels), ``scores`` and ``labels``.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtk.errors import ConfigError
from vtk.models.fuse import tensors_of

#: what to tell a user about operators ONNX cannot express
KNOWN_OPS = {
    "torchvision::deform_conv2d": "deformable convs (the backbone's deform: v1/v2)",
}


def task_metadata(task: Any, opset: int) -> dict[str, str]:
    """The ONNX metadata of ``task``'s export: how to prepare an image and read the outputs,
    as the task declares it (:meth:`vtk.tasks.VisionTask.deploy_metadata`)."""
    from vtk.deploy import READERS

    meta = task.deploy_metadata()
    if meta["vtk.task"] not in READERS:
        raise ConfigError(
            f"{type(task).__name__} is read as {meta['vtk.task']!r}, which the ONNX runtime "
            f"does not know ({', '.join(READERS)})."
        )
    return {**meta, "vtk.opset": str(opset)}


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, size: int | None = None, opset: int = 17
) -> dict[str, Any]:
    """``vtk export``: the checkpoint's network with BatchNorm folded, to ONNX with the metadata
    of :func:`task_metadata`, checked with onnxruntime on a ``size`` input (default the task's
    :meth:`default_size`, real-size)."""
    from vtk.api import load

    task = load(checkpoint, device="cpu", fast=True).task
    report = export_onnx(task, out, size or task.default_size(), opset)
    import onnx

    model = onnx.load(str(out))
    onnx.helper.set_model_props(model, task_metadata(task, opset))
    onnx.save(model, str(out))
    report.update(task=type(task).__name__, opset=opset, size=size or task.default_size())
    return report


def main(argv: list[str] | None = None) -> None:
    """``vtk export CKPT --format onnx [--out model.onnx] [--size N] [--opset 17]
    [--int8 --calib DIR [--calib_images N] [--eval DIR] [--eval_images N]]``, or ``vtk export
    CKPT --format weights --name NAME [--out DIR] [--info YAML] [--metrics CSV]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="vtk export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("checkpoint", help="a checkpoint of vtk fit, or the name of weights "
                        "vtk ships (vtk list weights)")  # fmt: skip
    parser.add_argument("--format", choices=["onnx", "weights"], default="onnx",
                        help="onnx: an ONNX model; weights: an entry of a weights registry "
                        "(NAME.safetensors in float16 and its card NAME.yaml, in --out, a "
                        "folder: VTK_WEIGHTS_DIR=that folder makes NAME usable everywhere)")  # fmt: skip
    parser.add_argument("--out", help="default: model.onnx, or the current folder (weights)")
    parser.add_argument("--name", help="--format weights: the entry's name")
    parser.add_argument("--info", help="--format weights: a YAML file of the card's own fields "
                        "(description, architecture, metrics: {split, values}, recipe, "
                        "trained_with, rescore, report, trained_on)")  # fmt: skip
    parser.add_argument("--metrics", help="--format weights: the metrics.csv of a vtk test of "
                        "this checkpoint: its test/ values become the card's metrics")  # fmt: skip
    parser.add_argument("--size", type=int, help="the check's input side (default: the task's)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--int8", action="store_true",
                        help="also quantise to INT8 (onnxruntime, static, QDQ): --out is the int8 "
                        "model, the fp32 one is written beside it as <out>_fp32.onnx")  # fmt: skip
    parser.add_argument("--calib", help="--int8: a folder of images to calibrate on (the "
                        "run's own data: e.g. its validation images)")  # fmt: skip
    parser.add_argument("--calib_images", type=int, default=100)
    parser.add_argument("--eval", help="--int8: held-out images to measure the cost on (default: "
                        "the --calib folder's images not used to calibrate)")  # fmt: skip
    parser.add_argument("--eval_images", type=int, default=200)
    parser.add_argument(
        "--quantize_all",
        action="store_true",
        help="--int8: quantise the first and last layers too (kept fp32 by default)",
    )
    args = parser.parse_args(argv)
    from vtk import zoo
    from vtk.errors import VTKError

    if args.format == "weights":
        _export_weights(args)
        return
    try:
        args.checkpoint = zoo.resolve(args.checkpoint)
        if args.int8:  # before the fp32 export: nothing is written for a run that cannot end
            from vtk.quantize import check_inputs

            check_inputs(args.checkpoint, args.calib, args.calib_images, args.eval)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    out = Path(args.out or "model.onnx")
    fp32_out = out.with_name(f"{out.stem}_fp32{out.suffix}") if args.int8 else out
    try:
        report = export_checkpoint(args.checkpoint, fp32_out, args.size, args.opset)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    print(f"wrote {report['path']} ({report['task']}, opset {report['opset']}, BatchNorm folded, "
          f"preprocessing in its metadata)")  # fmt: skip
    if report["checked"]:
        print(
            f"onnxruntime matches PyTorch on a {report['size']} px input: max abs difference "
            f"{report['max_abs_error']:.2e} (outputs up to {report['max_abs_value']:.2e})"
        )
    else:
        print(report["note"])
    if args.int8:
        from vtk.quantize import quantize

        try:
            q = quantize(fp32_out, out, args.calib, args.calib_images, args.eval,
                         args.eval_images, keep_fp32=not args.quantize_all)  # fmt: skip
        except VTKError as e:
            raise SystemExit(f"vtk: error: {e}") from None
        kept = ", ".join(q["kept_in_fp32"]) or "none"
        print(f"wrote {out} (INT8: {q['route']}; calibrated on {q['calibration_images']} images; "
              f"kept in fp32: {kept})")  # fmt: skip
        if "top1_agreement" in q:
            line = f"top-1 agreement with fp32 on {q['eval_images']} held-out images: {q['top1_agreement']:.1%}"
            if "top1_int8" in q:
                line += f"; top-1 fp32 {q['top1_fp32']:.1%}, int8 {q['top1_int8']:.1%}"
        else:
            line = (f"on {q['eval_images']} held-out images: {q['pixel_agreement']:.2%} of the pixels "
                    f"agree with fp32, mIoU of int8 against fp32 {q['miou_vs_fp32']:.1%}")  # fmt: skip
        print(line + f" (written to {out}.json)")


def _export_weights(args: Any) -> None:
    """``vtk export CKPT --format weights --name NAME [--out DIR] [--info YAML] [--metrics CSV]``."""
    import yaml

    from vtk import zoo
    from vtk.errors import VTKError

    if not args.name:
        raise SystemExit("vtk: error: --format weights needs the entry's name: --name NAME.")
    try:
        info = yaml.safe_load(Path(args.info).read_text()) if args.info else {}
        if args.metrics:
            metrics = dict(info.get("metrics") or {})
            metrics["values"] = {**summary_metrics(args.metrics), **(metrics.get("values") or {})}
            info["metrics"] = metrics
        entry = zoo.write_entry(args.checkpoint, args.name, args.out or ".", info)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    size = entry.file.stat().st_size / 1e6
    print(f"wrote {entry.file} ({size:.1f} MB, sha256 {entry.sha256}) and its card {entry.card}")


def summary_metrics(csv_path: str | Path) -> dict[str, float]:
    """The summary metrics of a ``vtk test`` metrics.csv (``test/<name>`` columns, not the
    per-class ones), fractions as percentages with two decimals, as model zoos table them (the
    binary task's decision threshold stays a probability)."""
    import csv

    values: dict[str, float] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                name = key.removeprefix("test/")
                if key.startswith("test/") and "/" not in name and name != "loss" and value:
                    number = float(value)
                    if name == "threshold":  # a probability, not a score
                        values[name] = round(number, 4)
                    else:
                        values[name] = round(100 * number, 2) if 0 <= number <= 1 else number
    if not values:
        raise ConfigError(f"{csv_path} holds no test/ metrics: give the metrics.csv of a vtk test.")
    return values


def export_onnx(task: Any, path: str | Path, size: int = 224, opset: int = 17) -> dict[str, Any]:
    """Export ``task``'s network (as its :meth:`export_spec` says) and check it with
    onnxruntime on the same input; returns a report."""
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError('ONNX export needs the onnx package: pip install -e ".[export]"')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = task.export_spec(size)
    net, example = spec["module"].eval(), spec["example"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=spec["input_names"], output_names=spec["output_names"],
                dynamic_axes=spec["dynamic_axes"],
            )  # fmt: skip
    except Exception as e:  # torch.onnx's errors carry the operator in their text
        op = re.search(r"\b([a-z_]+::[A-Za-z0-9_]+)", str(e))
        if op is None:
            raise
        what = KNOWN_OPS.get(op.group(1), "an operator of the model")
        raise ConfigError(
            f"ONNX (opset {opset}) cannot express the operator {op.group(1)}, used by {what}; "
            "export a model without it."
        ) from None
    report: dict[str, Any] = {"path": str(path), "checked": False}
    if importlib.util.find_spec("onnxruntime") is None:
        report["note"] = (
            "onnxruntime is not installed, so the export was not checked: "
            'pip install -e ".[export]"'
        )
        return report
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip(spec["input_names"], (t.numpy() for t in tensors_of(example))))
    with torch.no_grad():
        want = [t.numpy() for t in tensors_of(net(example))]
    got = session.run(None, feeds)
    error, scale = 0.0, 1.0
    for name, a, b in zip(spec["output_names"], got, want):
        if a.shape != b.shape:
            raise ConfigError(f"onnxruntime gives {name} of shape {a.shape}, PyTorch {b.shape}.")
        if a.size:
            error = max(error, float(np.abs(a.astype(np.float64) - b).max()))
            scale = max(scale, float(np.abs(b).max()))
    report.update(checked=True, max_abs_error=error, max_abs_value=scale)
    if error > 1e-3 * scale:
        raise ConfigError(
            f"onnxruntime's outputs differ from PyTorch's by up to {error:.3g} (values up to "
            f"{scale:.3g}): the export is not faithful."
        )
    return report
