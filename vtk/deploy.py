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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vtk.data.io import IMAGE_SUFFIXES, ImageLike, as_rgb
from vtk.errors import CheckpointError

log = logging.getLogger("vtk")


__all__ = ["OnnxPredictor"]


def _side(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    return (int(v), int(v)) if isinstance(v, int | float) else (int(v[0]), int(v[1]))


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
        meta = self.session.get_modelmeta().custom_metadata_map
        if "vtk.task" not in meta:
            raise CheckpointError(
                f"{self.path} has no vtk metadata: export it with `vtk export CKPT --format onnx`."
            )
        self.task = meta["vtk.task"]
        self.spec = json.loads(meta["vtk.input_spec"])
        self.class_names: list[str] = json.loads(meta["vtk.class_names"])
        self.category_ids: list[int] = json.loads(meta["vtk.category_ids"])
        self.top_k = min(int(meta.get("vtk.top_k", 5)), len(self.class_names))
        self.size_divisor = int(meta.get("vtk.size_divisor", 32))
        self.input_name = self.session.get_inputs()[0].name

    # -- preparation ------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(3, H', W')`` float32, as the checkpoint's input spec says."""
        resize, crop = self.spec.get("resize"), _side(self.spec.get("crop"))
        if resize:
            image = resize_shorter_side(image, resize)
        if crop:
            h, w = image.shape[:2]
            top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
            image = image[top : top + crop[0], left : left + crop[1]]
        x = image.astype(np.float32) / 255.0
        mean, std = self.spec.get("mean"), self.spec.get("std")
        if mean is not None and std is not None:
            x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        pad = _side(self.spec.get("pad_to"))
        if pad:
            h, w = x.shape[:2]
            x = np.pad(x, ((0, max(pad[0] - h, 0)), (0, max(pad[1] - w, 0)), (0, 0)))
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

    def _run(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        if self.task == "classification":
            batch = np.stack([self.prepare(im) for im in images])
            (logits,) = self.session.run(None, {self.input_name: batch})
            return [self._classes(row) for row in logits]
        if self.task == "segmentation":
            return [self._segment(im) for im in images]
        return [self._detect(im) for im in images]

    def _classes(self, logits: np.ndarray) -> dict[str, Any]:
        e = np.exp(logits.astype(np.float64) - logits.max())
        p = e / e.sum()
        top = np.argsort(-p, kind="stable")[: self.top_k]
        return {"labels": top.tolist(), "names": [self.class_names[k] for k in top],
                "scores": p[top].tolist()}  # fmt: skip

    def _segment(self, image: np.ndarray) -> dict[str, Any]:
        x = self.prepare(image)
        h, w = x.shape[1:]
        d = self.size_divisor
        x = np.pad(x, ((0, 0), (0, -h % d), (0, -w % d)))  # 0: the mean colour
        (logits,) = self.session.run(None, {self.input_name: x[None]})
        labels = logits[0, :, :h, :w].argmax(0)
        dtype = np.uint8 if logits.shape[1] <= 256 else np.uint16
        return {"labels": labels.astype(dtype)}

    def _detect(self, image: np.ndarray) -> dict[str, Any]:
        boxes, scores, labels = self.session.run(None, {self.input_name: self.prepare(image)})
        labels = labels.astype(np.int64).tolist()
        return {
            "boxes": boxes.astype(np.float32), "scores": scores.astype(float).tolist(),
            "labels": labels, "names": [self.class_names[k] for k in labels],
            "category_ids": [self.category_ids[k] for k in labels],
        }  # fmt: skip
