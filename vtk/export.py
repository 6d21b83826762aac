"""ONNX export of a trained checkpoint, checked against onnxruntime when it is installed.

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
from torch import Tensor

from vtk.errors import ConfigError

#: what to tell a user about operators ONNX cannot express
KNOWN_OPS = {
    "torchvision::deform_conv2d": "deformable convs (the backbone's deform: v1/v2)",
}


def _tensors(x: Any) -> list[Tensor]:
    """The tensors of a (nested) output or input, in the order ONNX flattens them."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, list | tuple):
        return [t for v in x for t in _tensors(v)]
    return []


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
    feeds = dict(zip(spec["input_names"], (t.numpy() for t in _tensors(example))))
    with torch.no_grad():
        want = [t.numpy() for t in _tensors(net(example))]
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
