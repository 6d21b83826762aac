"""Run a model exported by ``vtk export`` with onnxruntime, numpy and Pillow only — no torch.

    import vtk
    model = vtk.load("model.onnx")            # an OnnxPredictor
    result = model.predict("image.jpg")       # the same results as vtk.load(checkpoint)
    for r in model.predict_folder("images/"): ...

The ONNX file's metadata (written by :func:`vtk.export.task_metadata`) says how to prepare an
image (mean, std, resize, crop: the checkpoint's input spec) and what the outputs are; this
module imports nothing of vtk that needs torch, so a deployment installs ``onnxruntime numpy
pillow`` (and vtk without its dependencies: ``pip install --no-deps vtk-vision``).

Preparation follows the checkpoint's input spec: images are read upright (EXIF); a ``resize``
of the shorter side is the PyTorch pipeline's own (OpenCV's area filter to shrink, linear to
enlarge, sizes rounded as albumentations rounds them) when OpenCV is installed, so scores equal
``vtk.load(checkpoint)``'s up to float rounding; without OpenCV, Pillow's box and bilinear
filters stand in (docs/deployment.md gives the difference measured on real photos). Segmentation pads each image to a multiple of 32 and crops the logits
back, as the whole-image evaluation does; detection takes the image in [0, 1] at its own size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from vtk.data.io import IMAGE_SUFFIXES, ImageLike, as_rgb
from vtk.errors import CheckpointError
from vtk.spec import InputSpec

log = logging.getLogger("vtk")


__all__ = ["OnnxPredictor"]


def resize_shorter_side(image: np.ndarray, side: int, use_opencv: bool | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 with its shorter side resized to ``side``, as the PyTorch evaluation
    pipeline does (albumentations' ``SmallestMaxSize``: each side ``round(side * scale)``,
    OpenCV's area filter to shrink and linear to enlarge). ``use_opencv`` None: OpenCV when it
    is installed, else Pillow's box / bilinear filters (close, not equal)."""
    h, w = image.shape[:2]
    scale = side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    if use_opencv is None:
        use_opencv = _opencv() is not None
    if use_opencv:
        cv2 = _opencv()
        return cv2.resize(
            image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, method))


def _opencv() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    return cv2


class OnnxPredictor:
    """An exported vtk model with :meth:`predict` and :meth:`predict_folder`, as
    :class:`vtk.api.Predictor` has, on onnxruntime.

    Args:
        path: the ``.onnx`` file written by ``vtk export``.
        providers: onnxruntime execution providers (default: CPU).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model {self.path} does not exist.")
        try:
            self.session = ort.InferenceSession(
                str(self.path), providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as e:  # onnxruntime's own classes (InvalidProtobuf, Fail, ...)
            reason = " ".join(str(e).split())[:160]
            raise CheckpointError(
                f"{self.path} is not an ONNX model onnxruntime can load (truncated, or another "
                f"kind of file): {reason}"
            ) from None
        self.meta: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        meta = self.meta
        if "vtk.task" not in meta:
            raise CheckpointError(
                f"{self.path} has no vtk metadata: export it with `vtk export CKPT --format onnx`."
            )
        self.task = meta["vtk.task"]
        if self.task not in READERS:
            raise CheckpointError(
                f"{self.path} is a {self.task!r} model, which this vtk cannot read "
                f"({', '.join(READERS)}): update vtk."
            )
        self.spec = json.loads(meta["vtk.input_spec"])
        self.class_names: list[str] = json.loads(meta["vtk.class_names"])
        self.category_ids: list[int] = json.loads(meta["vtk.category_ids"])
        self.top_k = min(int(meta.get("vtk.top_k", 5)), len(self.class_names))
        self.size_divisor = int(meta.get("vtk.size_divisor", 32))
        self.threshold = float(meta.get("vtk.threshold", 0.5))
        self.input_name = self.session.get_inputs()[0].name

    # -- preparation ------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(3, H', W')`` float32: the input spec's steps
        (:meth:`vtk.spec.InputSpec.steps`, the ones the PyTorch pipeline runs) in numpy."""
        x: np.ndarray = image
        for name, arg in InputSpec.from_dict(self.spec).steps():
            if name == "resize":
                x = resize_shorter_side(x, arg)
            elif name == "crop":
                h, w = x.shape[:2]
                top, left = (h - arg[0]) // 2, (w - arg[1]) // 2
                x = x[top : top + arg[0], left : left + arg[1]]
            elif name == "scale":
                x = x.astype(np.float32) / 255.0
            elif name == "normalise":
                x = (x - np.asarray(arg[0], np.float32)) / np.asarray(arg[1], np.float32)
            elif name == "pad":
                h, w = x.shape[:2]
                x = np.pad(x, ((0, max(arg[0] - h, 0)), (0, max(arg[1] - w, 0)), (0, 0)))
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    # -- prediction -------------------------------------------------------------------------------
    def predict(
        self, image: ImageLike | Sequence[ImageLike]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """The prediction of one image or of a list (see :meth:`vtk.api.Predictor.predict`)."""
        if isinstance(image, list | tuple):
            return self._run([as_rgb(im) for im in image])
        return self._run([as_rgb(image)])[0]

    def predict_folder(self, folder: str | Path, batch_size: int = 8) -> Iterator[dict[str, Any]]:
        """Stream the results (with ``id`` and ``path``) for the images of ``folder``; files that
        are not images and images that cannot be decoded are reported and left out."""
        folder = Path(folder)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            log.warning("skipping %d files that are not images in %s: %s", len(others), folder,
                        others[:5])  # fmt: skip
        paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        for start in range(0, len(paths), batch_size):
            images, kept = [], []
            for p in paths[start : start + batch_size]:
                try:
                    images.append(as_rgb(p))
                    kept.append(p)
                except (OSError, UnidentifiedImageError, ValueError) as e:
                    log.warning("skipping an image that cannot be decoded: %s (%s)", p, e)
            for p, result in zip(kept, self._run(images) if images else []):
                yield {"id": p.stem, "path": str(p), **result}

    def graph_input(self, image: np.ndarray) -> np.ndarray:
        """What the graph takes for one ``(H, W, 3)`` uint8 image (prepared, padded, batched as
        its reader feeds it): a calibration sample of ``vtk export --int8``."""
        return READERS[self.task].feed(self, image)[0]

    def _run(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        reader = READERS[self.task]
        fed = [reader.feed(self, im) for im in images]
        if reader.batched:  # one run for all: the inputs are the same size
            outputs = self.session.run(None, {self.input_name: np.concatenate([x for x, _ in fed])})
            return [
                reader.read(self, [o[i : i + 1] for o in outputs], c)
                for i, (_, c) in enumerate(fed)
            ]
        return [reader.read(self, self.session.run(None, {self.input_name: x}), c) for x, c in fed]


# -- how each kind of exported graph is fed and read (a task's ``deploy_kind`` names one) --------
def _feed_batch(p: OnnxPredictor, image: np.ndarray) -> tuple[np.ndarray, Any]:
    return p.prepare(image)[None], None


def _feed_padded(p: OnnxPredictor, image: np.ndarray) -> tuple[np.ndarray, Any]:
    x = p.prepare(image)
    h, w = x.shape[1:]
    d = p.size_divisor
    return np.pad(x, ((0, 0), (0, -h % d), (0, -w % d)))[None], (h, w)  # 0: the mean colour


def _feed_image(p: OnnxPredictor, image: np.ndarray) -> tuple[np.ndarray, Any]:
    return p.prepare(image), None


def _read_classes(p: OnnxPredictor, outputs: list[np.ndarray], _: Any) -> dict[str, Any]:
    logits = outputs[0][0].astype(np.float64)
    e = np.exp(logits - logits.max())
    scores = e / e.sum()
    top = np.argsort(-scores, kind="stable")[: p.top_k]
    return _classes(p, top, scores)


def _read_labels(p: OnnxPredictor, outputs: list[np.ndarray], _: Any) -> dict[str, Any]:
    scores = 1.0 / (1.0 + np.exp(-outputs[0][0].astype(np.float64)))
    order = np.argsort(-scores, kind="stable")
    return _classes(p, order[scores[order] >= p.threshold], scores)


def _classes(p: OnnxPredictor, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {"labels": labels.tolist(), "names": [p.class_names[k] for k in labels],
            "scores": scores[labels].tolist()}  # fmt: skip


def _read_map(p: OnnxPredictor, outputs: list[np.ndarray], size: tuple[int, int]) -> dict[str, Any]:
    logits = outputs[0]
    labels = logits[0, :, : size[0], : size[1]].argmax(0)
    return {"labels": labels.astype(np.uint8 if logits.shape[1] <= 256 else np.uint16)}


def _read_boxes(p: OnnxPredictor, outputs: list[np.ndarray], _: Any) -> dict[str, Any]:
    boxes, scores, labels = outputs
    labels = labels.astype(np.int64).tolist()
    return {
        "boxes": boxes.astype(np.float32), "scores": scores.astype(float).tolist(),
        "labels": labels, "names": [p.class_names[k] for k in labels],
        "category_ids": [p.category_ids[k] for k in labels],
    }  # fmt: skip


class Reader(NamedTuple):
    """How a deployment runs one kind of exported graph: ``feed`` turns an image into the
    graph's input (and what ``read`` needs to know of it), ``read`` turns the graph's outputs
    for that image into the result, ``batched``: several images go through one run."""

    feed: Callable[[OnnxPredictor, np.ndarray], tuple[np.ndarray, Any]]
    read: Callable[[OnnxPredictor, list[np.ndarray], Any], dict[str, Any]]
    batched: bool


#: ``vtk.task`` of the ONNX metadata (a task's ``deploy_kind``) -> its reader
READERS: dict[str, Reader] = {
    "classification": Reader(_feed_batch, _read_classes, batched=True),  # softmax, top k
    "multilabel": Reader(_feed_batch, _read_labels, batched=True),  # sigmoid, at the threshold
    "segmentation": Reader(_feed_padded, _read_map, batched=False),  # arg-max per pixel
    "detection": Reader(_feed_image, _read_boxes, batched=False),  # decoded in the graph
}
