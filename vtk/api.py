"""Use a trained checkpoint from Python.

    import vtk
    model = vtk.load("runs/demo_detection/version_0/checkpoints/last.ckpt")
    result = model.predict("image.jpg")      # a path, a PIL image or an (H, W, 3) uint8 array

The checkpoint rebuilds its own task and network (the recipe's config is in it; pretrained
``weights`` are not fetched again: the checkpoint's tensors replace them), and its input spec
(normalisation, resize / crop, as the run's validation did) prepares the image. The result is
what the task's own ``predict_step`` gives for the image (see each task's docstring); a task of
your own, subclassing a vtk task, works the same.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities import move_data_to_device
from PIL import Image

from vtk.data.base import list_collate, predict_item
from vtk.data.io import read_image
from vtk.errors import ConfigError
from vtk.recipe import strip_weights

ImageLike = str | Path | np.ndarray | Image.Image


class Predictor:
    """A trained task, ready to :meth:`predict` images as its validation saw them."""

    def __init__(self, task: Any, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.task = task.eval().to(self.device)
        self.transform = task.input_spec.transform()

    @property
    def class_names(self) -> list[str]:
        return list(self.task.class_names)

    @torch.inference_mode()
    def predict(self, image: ImageLike) -> dict[str, Any]:
        """The task's prediction for one image (its ``predict_step`` result, without ``id`` and
        ``path``): classification ``{"labels", "names", "scores"}`` (top-k); segmentation
        ``{"labels"}`` (an (H, W) class map at the image's size); detection ``{"boxes"}`` (x1,
        y1, x2, y2 in the image's pixels), ``"labels"``, ``"names"``, ``"category_ids"``,
        ``"scores"``."""
        path = str(image) if isinstance(image, str | Path) else ""
        item = predict_item(_rgb(image), self.transform, Path(path).stem, path)
        batch = move_data_to_device(list_collate([item]), self.device)
        (result,) = self.task.predict_step(batch, 0)
        return {k: v for k, v in result.items() if k not in ("id", "path")}


def _rgb(image: ImageLike) -> np.ndarray:
    """``image`` as an (H, W, 3) uint8 RGB array."""
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return array


def load(checkpoint: str | Path, device: str = "cpu", **eval_options: Any) -> Predictor:
    """The task saved in ``checkpoint`` (by ``vtk fit``), ready to :meth:`~Predictor.predict`.

    ``eval_options`` replace the checkpoint's evaluation settings, those the task lists in its
    ``eval_options`` (segmentation: ``eval_mode``, ``window``, ``stride``, ``slide_batch``,
    ``tta_scales``, ``tta_flip``): ``vtk.load(path, tta_flip=True)``.
    """
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
    unknown = sorted(set(eval_options) - set(getattr(cls, "eval_options", ())))
    if unknown:
        raise ConfigError(
            f"{name} has no evaluation option {', '.join(unknown)}; it has "
            f"{', '.join(getattr(cls, 'eval_options', ())) or 'none'}."
        )
    task = cls.load_from_checkpoint(
        path, map_location="cpu", model=strip_weights(hparams["model"]), weights_only=True,
        **eval_options,
    )  # fmt: skip
    return Predictor(task, device)
