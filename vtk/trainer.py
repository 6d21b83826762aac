"""The Trainer the ``vtk`` command builds: Lightning's, with ``precision: auto``.

A recipe written for GPUs says ``16-mixed``; on a CPU Lightning turns that into ``bf16-mixed``
(with one warning line), and CPU bf16 autocast ranges from a little faster to many times slower
than fp32 depending on the CPU and the operators, and PyTorch's CPU bf16 convolution weight
gradient has been seen non-finite on 1x1 maps (see the README's known limitations). So the
recipes say ``auto``, which vtk resolves for the machine the run is on and logs:

* ``16-mixed`` (fp16 autocast with gradient scaling) on CUDA GPUs;
* ``bf16-mixed`` on accelerators whose native type it is (TPU/XLA, Gaudi HPU);
* ``32-true`` otherwise (CPU, Apple MPS).

An explicit value (``--trainer.precision bf16-mixed``) is obeyed as Lightning obeys it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from vtk._compat import PRECISION_INPUT

log = logging.getLogger("vtk")

__all__ = ["Trainer", "device_kind", "resolve_precision"]


def device_kind(accelerator: Any) -> str:
    """``cuda``, ``mps``, ``cpu`` or another accelerator's name, as Lightning would pick it."""
    if isinstance(accelerator, str):
        name = accelerator.lower()
    else:  # an Accelerator instance
        name = type(accelerator).__name__.lower().replace("accelerator", "")
    if name in ("gpu", "cuda"):
        return "cuda" if torch.cuda.is_available() or name == "cuda" else "mps"
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(accelerator: Any = "auto") -> str:
    """What ``precision: auto`` means on the device ``accelerator`` selects (see the module)."""
    kind = device_kind(accelerator)
    if kind == "cuda":
        return "16-mixed"
    if kind in ("tpu", "xla", "hpu"):
        return "bf16-mixed"
    return "32-true"


class Trainer(pl.Trainer):
    """``lightning.pytorch.Trainer`` that also takes ``precision="auto"`` (see the module), and
    reads a whole number given to ``limit_*_batches``, ``val_check_interval`` or
    ``overfit_batches`` as a count of batches, as Lightning's docs mean (1 is one batch, 1.0
    all of them).

    Every other argument is Lightning's.
    """

    def __init__(
        self,
        *args: Any,
        precision: PRECISION_INPUT | Literal["auto"] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        val_check_interval: int | float | None = None,
        overfit_batches: int | float = 0.0,
        **kwargs: Any,
    ) -> None:
        # Lightning's own hints read Union[float, int] to the CLI parser, which then makes
        # `--trainer.limit_val_batches 1` the fraction 1.0 (every batch), not one batch:
        # restated int-first, a whole number on the command line or in a recipe is a count
        kwargs.update(
            limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches, limit_predict_batches=limit_predict_batches,
            val_check_interval=val_check_interval, overfit_batches=overfit_batches,
        )  # fmt: skip
        if precision == "auto":
            accelerator = kwargs.get("accelerator", "auto")
            precision = resolve_precision(accelerator)
            if rank_zero_only.rank == 0:
                log.info(
                    "precision auto -> %s on %s (give --trainer.precision to choose)",
                    precision, device_kind(accelerator),
                )  # fmt: skip
        super().__init__(*args, precision=precision, **kwargs)
