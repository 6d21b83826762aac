"""INT8 for CPUs: post-training static quantisation of an exported model, with what it cost.

``vtk export CKPT --int8 --calib DIR`` exports the folded network to ONNX (as ``vtk export``
does), then quantises it with ONNX Runtime's static quantisation in the QDQ format: weights
int8 per output channel, activations uint8 with ranges calibrated on images of ``--calib``
(prepared exactly as the deployed model prepares them, :meth:`vtk.deploy.OnnxPredictor.prepare`).
The first convolution (which sees the raw image) and the last layer (the class scores) stay in
fp32 by default: they are few operations, and where quantisation costs most.

The export then measures what quantising cost on held-out images (``--eval``, default the
calibration folder's images not used to calibrate): classification the share of images whose
top class is fp32's (and the top-1 of both when the folder has one sub-folder per class),
segmentation the share of pixels that agree and the mIoU of the int8 maps against fp32's.
It prints them and writes them beside the model (``<model>.json``), so a model whose
quantisation broke it is not shipped unseen. ``vtk.load("model_int8.onnx")`` predicts through
the same torch-free predictor.

Why ONNX Runtime's route: it runs where the fp32 ONNX model already runs (no torch at
deployment), and it is the one measured here (docs/deployment.md gives the figures and the
CPU); detection is not quantised yet (its graph holds the box decoding and NMS).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vtk.errors import ConfigError


def _images(folder: str | Path) -> list[Path]:
    from vtk.data.io import IMAGE_SUFFIXES

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder {root} does not exist.")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ConfigError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return found


def check_inputs(
    checkpoint: str | Path, calib: str | Path | None, calib_images: int = 100,
    eval_dir: str | Path | None = None,
) -> None:  # fmt: skip
    """What ``vtk export --int8`` needs, checked before anything is exported: a task this route
    quantises, a calibration folder with images, and held-out images to measure the cost on."""
    from vtk.checkpoint import recipe_hyperparameters

    if not calib:
        raise ConfigError("--int8 needs images to calibrate on: --calib DIR.")
    from vtk.recipe import task_attribute

    path = str(recipe_hyperparameters(checkpoint, "give a checkpoint of vtk fit.")["_class_path"])
    refusal = task_attribute(path, "int8_refusal")
    if refusal:
        raise ConfigError(refusal)
    pool = _images(calib)
    if eval_dir is not None:
        _images(eval_dir)
    elif len(pool) <= calib_images:
        raise ConfigError(
            f"every image of {calib} calibrates ({len(pool)}); give held-out images to "
            "measure the cost on: --eval DIR (or fewer --calib_images)."
        )


def fp32_and_int8_layers(path: str | Path) -> tuple[str, str]:
    """The names of the first convolution and of the last Conv / Gemm of an ONNX graph."""
    import onnx

    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
    if not nodes:
        raise ConfigError(f"{path} has no convolution or linear layer to quantise.")
    return nodes[0].name, nodes[-1].name


class _Reader:
    """ONNX Runtime's calibration reader over prepared images, one at a time."""

    def __init__(self, predictor: Any, images: list[Path]) -> None:
        self.predictor, self.images = predictor, images
        self._it: Iterator[Path] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        from vtk.data.io import read_image

        if self._it is None:
            self._it = iter(self.images)
        path = next(self._it, None)
        if path is None:
            return None
        return {self.predictor.input_name: self.predictor.graph_input(read_image(path))}

    def rewind(self) -> None:
        self._it = None


def quantize(
    fp32_path: str | Path,
    out: str | Path,
    calib: str | Path,
    calib_images: int = 100,
    eval_dir: str | Path | None = None,
    eval_images: int = 200,
    keep_fp32: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantise the vtk ONNX model at ``fp32_path`` to ``out`` (see the module docs) and return
    the report (also written to ``<out>.json``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vtk.deploy import OnnxPredictor

    fp32 = OnnxPredictor(fp32_path)
    if fp32.meta.get("vtk.int8_refusal"):
        raise ConfigError(fp32.meta["vtk.int8_refusal"])
    pool = _images(calib)
    random.Random(seed).shuffle(pool)
    chosen = pool[:calib_images]
    held_out = _images(eval_dir) if eval_dir is not None else pool[calib_images:]
    if not held_out:
        raise ConfigError(
            f"every image of {calib} calibrates ({len(chosen)}); give held-out images to "
            "measure the cost on: --eval DIR (or fewer --calib_images)."
        )
    held_out = held_out[:eval_images]
    out = Path(out)
    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    excluded = list(fp32_and_int8_layers(prepared)) if keep_fp32 else []
    quantize_static(
        str(prepared), str(out), _Reader(fp32, chosen), quant_format=QuantFormat.QDQ,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
    )  # fmt: skip
    prepared.unlink(missing_ok=True)
    _copy_metadata(fp32_path, out)
    report: dict[str, Any] = {
        "route": "onnxruntime quantize_static, QDQ, int8 weights per channel, uint8 activations "
        "(MinMax)",
        "fp32_model": str(fp32_path),
        "int8_model": str(out),
        "calibration_images": len(chosen),
        "calibration_folder": str(calib),
        "kept_in_fp32": excluded,
        **agreement(fp32, OnnxPredictor(out), held_out),
    }
    Path(f"{out}.json").write_text(json.dumps(report, indent=2))
    return report


def _copy_metadata(source: str | Path, target: str | Path) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    model = onnx.load(str(target))
    onnx.helper.set_model_props(model, {**meta, "vtk.int8": "onnxruntime-qdq"})
    onnx.save(model, str(target))


def agreement(fp32: Any, int8: Any, images: list[Path]) -> dict[str, Any]:
    """What quantising changed on ``images``, read from the answers' form (no task named):
    for lists of classes, top-1 agreement, the share of images whose whole answer (the listed
    classes) is the same, and top-1 accuracy when each image's parent folder is a class name;
    for label maps, pixel agreement and the mIoU against fp32."""
    from vtk.data.io import read_image

    arrays = [read_image(p) for p in images]
    a, b = fp32.predict(arrays), int8.predict(arrays)
    out: dict[str, Any] = {"eval_images": len(images)}
    if isinstance(a[0]["labels"], list):

        def first(labels: list[int]) -> int | None:
            return labels[0] if labels else None

        out["top1_agreement"] = float(np.mean([first(x["labels"]) == first(y["labels"])
                                               for x, y in zip(a, b)]))  # fmt: skip
        out["answer_agreement"] = float(np.mean([x["labels"] == y["labels"] for x, y in zip(a, b)]))
        names = fp32.class_names
        if all(p.parent.name in names for p in images):
            truth = [names.index(p.parent.name) for p in images]
            out["top1_fp32"] = float(np.mean([first(x["labels"]) == t for x, t in zip(a, truth)]))
            out["top1_int8"] = float(np.mean([first(y["labels"]) == t for y, t in zip(b, truth)]))
        return out
    k = len(fp32.class_names)
    confusion = np.zeros((k, k), np.int64)
    for x, y in zip(a, b):
        confusion += np.bincount(
            x["labels"].astype(np.int64).ravel() * k + y["labels"].astype(np.int64).ravel(),
            minlength=k * k,
        ).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    out["pixel_agreement"] = float(tp.sum() / confusion.sum())
    out["miou_vs_fp32"] = float(np.mean(tp[union > 0] / union[union > 0]))
    return out
