"""Use a trained checkpoint from Python.

    import vtk
    model = vtk.load("runs/demo_detection/version_0/checkpoints/last.ckpt")
    result = model.predict("image.jpg")      # a path, a PIL image or an (H, W, 3) uint8 array

The checkpoint rebuilds its own network (its recipe's model config is in it; pretrained
``weights`` arguments are not fetched again: the checkpoint's tensors replace them). The
evaluation preprocessing comes from the run's ``config.yaml`` beside the ``checkpoints/``
folder when there is one (classification: resize and centre crop), else the defaults.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from vtk.data import transforms as T
from vtk.data.io import read_image
from vtk.errors import ConfigError


def _no_weights(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: None if k == "weights" else _no_weights(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_no_weights(v) for v in node]
    return node


class Predictor:
    """A trained task and its evaluation preprocessing; :meth:`predict` takes one image."""

    def __init__(self, task: Any, transform: Any, kind: str, device: str = "cpu") -> None:
        self.task = task.eval().to(device)
        self.transform = transform
        self.kind = kind
        self.device = torch.device(device)
        self.class_names: list[str] = list(task.class_names)

    def _image(self, image: str | Path | np.ndarray | Image.Image) -> np.ndarray:
        if isinstance(image, str | Path):
            return read_image(image)
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}"
            )
        return array

    @torch.no_grad()
    def predict(self, image: str | Path | np.ndarray | Image.Image, top_k: int = 5) -> dict:
        """Classification: ``{"labels", "names", "scores"}`` (top-k); segmentation:
        ``{"labels"}`` (an (H, W) class map at the image's size); detection: ``{"boxes"}`` (x1,
        y1, x2, y2 in the image's pixels), ``"labels"``, ``"names"``, ``"scores"``."""
        array = self._image(image)
        x = self.transform(image=array)["image"].to(self.device)
        if self.kind == "classification":
            probs = torch.softmax(self.task.model(x[None]).float(), dim=1)[0]
            scores, labels = probs.topk(min(top_k, probs.numel()))
            return {
                "labels": labels.tolist(),
                "names": [self.class_names[i] for i in labels.tolist()],
                "scores": scores.tolist(),
            }
        if self.kind == "segmentation":
            h, w = array.shape[:2]
            logits = self.task.model(x[None])["out"][0]
            return {"labels": logits.argmax(0)[:h, :w].to(torch.uint8).cpu().numpy()}
        (det,) = self.task.model([x])
        labels = det["labels"].tolist()
        return {
            "boxes": det["boxes"].float().cpu().numpy(),
            "labels": labels,
            "names": [self.class_names[i] for i in labels],
            "scores": det["scores"].float().cpu().tolist(),
        }


def _data_config(ckpt: Path) -> dict[str, Any]:
    config = ckpt.parent.parent / "config.yaml"
    if not config.is_file():
        return {}
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    return data.get("init_args") or {}


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """The task saved in ``checkpoint`` (by ``vtk fit``), ready to :meth:`~Predictor.predict`."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist.")
    state = torch.load(path, weights_only=True, map_location="cpu")
    hparams = state.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path")
    if not class_path or "model" not in hparams:
        raise ConfigError(
            f"{path} was not saved by `vtk fit` (it has no recipe config); build the model in "
            "Python and load its state_dict instead."
        )
    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    task = cls.load_from_checkpoint(path, map_location="cpu", model=_no_weights(hparams["model"]))
    data = _data_config(path)
    kind = {"ClassificationTask": "classification", "SegmentationTask": "segmentation"}.get(
        name, "detection"
    )
    if kind == "classification":
        size = int(data.get("image_size") or 224)
        transform = T.classification_eval(size, int(data.get("resize_size") or round(size / 0.875)))
    elif kind == "segmentation":
        transform = T.segmentation_eval()
    else:
        transform = T.detection_eval()
    return Predictor(task, transform, kind, device)
