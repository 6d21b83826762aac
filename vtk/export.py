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
from torch import Tensor, nn

from vtk.errors import ConfigError

#: what to tell a user about operators ONNX cannot express
KNOWN_OPS = {
    "torchvision::deform_conv2d": "deformable convs (the backbone's deform: v1/v2)",
}


class _Logits(nn.Module):
    """A segmentation model's main output alone."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]


def export_onnx(
    model: nn.Module, kind: str, path: str | Path, size: int = 224, opset: int = 17
) -> dict[str, Any]:
    """Export ``model`` (a task's network, in eval mode) and check it; returns a report."""
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError('ONNX export needs the onnx package: pip install -e ".[export]"')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    torch.manual_seed(0)
    if kind == "detection":
        example: Any = ([torch.rand(3, size, size)],)
        names = {"input_names": ["image"], "output_names": ["boxes", "scores", "labels"]}
        dynamic = {"image": {1: "height", 2: "width"}}
        net = model
    else:
        example = (torch.randn(2, 3, size, size),)
        names = {"input_names": ["image"], "output_names": ["logits"]}
        dynamic = {"image": {0: "batch", 2: "height", 3: "width"}}
        # eval, wrapper included: the exporter restores the wrapper's mode, and its children's
        net = (_Logits(model) if kind == "segmentation" else model).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, example, str(path), dynamo=False, opset_version=opset,
                dynamic_axes=dynamic, **names,
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
    with torch.no_grad():
        if kind == "detection":
            (image,) = example[0]
            got = session.run(None, {"image": image.numpy()})[0]
            want = model([image])[0]["boxes"].numpy()
        else:
            (x,) = example
            got = session.run(None, {"image": x.numpy()})[0]
            want = net(x).numpy()
    if got.shape != want.shape:
        raise ConfigError(f"onnxruntime gives shape {got.shape}, PyTorch {want.shape}.")
    error = float(np.abs(got - want).max()) if got.size else 0.0
    scale = float(np.abs(want).max()) if want.size else 1.0
    report.update(checked=True, max_abs_error=error, max_abs_value=scale)
    if error > 1e-3 * max(1.0, scale):
        raise ConfigError(
            f"onnxruntime's outputs differ from PyTorch's by up to {error:.3g} (values up to "
            f"{scale:.3g}): the export is not faithful."
        )
    return report
