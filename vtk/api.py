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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities import move_data_to_device
from torch.utils.data import DataLoader

from vtk import zoo
from vtk._compat import enable_inductor_freezing
from vtk.checkpoint import recipe_hyperparameters
from vtk.data.base import PredictDataset, list_collate, list_images, predict_item
from vtk.data.io import ImageLike, as_rgb
from vtk.data.transforms import eval_transform
from vtk.errors import ConfigError
from vtk.recipe import strip_weights
from vtk.trainer import device_kind


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA if there is one, else Apple's MPS, else the CPU; anything else as given."""
    return torch.device(device_kind("auto") if str(device) == "auto" else device)


class Predictor:
    """A trained task, ready to :meth:`predict` images as its validation saw them.

    Args:
        task: the task (from :func:`load`).
        device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        fast: the inference path: BatchNorm folded into the convolutions
            (:func:`vtk.models.fuse.fold_batchnorm`, checked on an example), ``channels_last``
            memory on CUDA and CPU, eval mode and ``torch.inference_mode``. The results equal the
            plain network's up to float rounding.
        compile: ``torch.compile`` the network with Inductor's ``freezing`` (weights as
            constants: prepacked, convolutions fused with their activations), for inference only;
            the first batch of each input shape waits for the compilation.
        bf16: bf16 autocast (where the device has fast bf16: recent GPUs, CPUs with AMX).
    """

    def __init__(
        self,
        task: Any,
        device: str | torch.device = "auto",
        fast: bool = True,
        compile: bool = False,
        bf16: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.task = task.eval()
        self.fold_report: dict[str, Any] | None = None
        if fast:
            self.fold_report = task.fold_batchnorm()
            if self.device.type in ("cpu", "cuda"):
                self.task.model = self.task.model.to(memory_format=torch.channels_last)
        self.task = self.task.to(self.device)
        if compile:
            self.task.compile_network(compile_for_inference)
        self.bf16 = bf16
        self.transform = eval_transform(task.input_spec)

    @property
    def class_names(self) -> list[str]:
        return list(self.task.class_names)

    def predict(
        self, image: ImageLike | Sequence[ImageLike]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """The task's prediction for one image, or for a list of images run as one batch (its
        ``predict_step`` result, without ``id`` and ``path``): classification ``{"labels",
        "names", "scores"}`` (top-k); segmentation ``{"labels"}`` (an (H, W) class map at the
        image's size); detection ``{"boxes"}`` (x1, y1, x2, y2 in the image's pixels),
        ``"labels"``, ``"names"``, ``"category_ids"``, ``"scores"``."""
        if isinstance(image, list | tuple):
            items = [self._item(im) for im in image]
            return [_public(r) for r in self._run(list_collate(items))]
        (result,) = self._run(list_collate([self._item(image)]))
        return _public(result)

    def predict_folder(
        self, folder: str | Path, batch_size: int = 8, num_workers: int = 2, progress: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Stream the results (with ``id`` and ``path``) for every image of ``folder``, read and
        prepared by a DataLoader's workers, ``batch_size`` at a time. Files that are not images
        are listed in a warning; images that cannot be decoded are reported by path and left
        out (the rest go on)."""
        dataset = PredictDataset(list_images(folder), self.transform)
        loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list_collate,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        bar = _progress(len(dataset), progress)
        for batch in loader:
            results = self._run(batch)
            bar.update(len(batch["id"]) if batch is not None else 0)
            yield from results
        bar.close()

    def _item(self, image: ImageLike) -> dict[str, Any]:
        path = str(image) if isinstance(image, str | Path) else ""
        return predict_item(as_rgb(image), self.transform, Path(path).stem, path)

    @torch.inference_mode()
    def _run(self, batch: dict[str, Any] | None) -> list[dict[str, Any]]:
        if batch is None:
            return []
        batch = move_data_to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.task.predict_step(batch, 0)


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` with Inductor's freezing (:func:`vtk._compat.enable_inductor_freezing`):
    parameters become constants, so weights are prepacked and convolutions fused with what
    follows them."""
    enable_inductor_freezing()
    return torch.compile(model)


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("id", "path")}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="image", desc="predict")


def load(
    checkpoint: str | Path,
    device: str = "auto",
    fast: bool = True,
    compile: bool = False,
    bf16: bool = False,
    **eval_options: Any,
) -> Predictor:
    """The task saved in ``checkpoint`` (by ``vtk fit``), or the weights vtk ships under that
    name (``vtk list weights``), ready to :meth:`~Predictor.predict` (see :class:`Predictor` for
    ``device``, ``fast``, ``compile``, ``bf16``).

    ``eval_options`` replace the checkpoint's evaluation settings, those the task lists in its
    ``eval_options`` (segmentation: ``eval_mode``, ``window``, ``stride``, ``slide_batch``,
    ``tta_scales``, ``tta_flip``): ``vtk.load(path, tta_flip=True)``.
    """
    path = Path(zoo.resolve(checkpoint))
    hparams = recipe_hyperparameters(
        path, "build the model in Python and load its state_dict instead."
    )
    class_path = hparams["_class_path"]
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
    return Predictor(task, device, fast=fast, compile=compile, bf16=bf16)
