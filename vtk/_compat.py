"""Every place vtk relies on a library's private internals, in one file.

Each has no public equivalent in the pinned versions (Lightning 2.6, torchmetrics 1.9,
PyTorch 2.14), says why it is needed, and has a test in ``tests/test_compat.py`` that fails
loudly if the library changes what it relies on. Nothing else in vtk imports a private name of
Lightning, torchmetrics or PyTorch.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import Tensor, nn


def __getattr__(name: str) -> Any:
    # PRECISION_INPUT: the values Lightning's ``Trainer(precision=...)`` accepts (a Literal
    # union), so that vtk.trainer.Trainer's signature (which adds "auto") validates and
    # documents them as Lightning's does; Lightning names the type privately. Read on first
    # use: importing this module (vtk.models does, for BATCH_NORM) does not import Lightning.
    if name == "PRECISION_INPUT":
        from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

        return _PRECISION_INPUT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: every BatchNorm (1d, 2d, 3d, SyncBatchNorm) and every InstanceNorm: torch's private base
#: classes, named here only
BATCH_NORM = nn.modules.batchnorm._BatchNorm
INSTANCE_NORM = nn.modules.instancenorm._InstanceNorm


def enable_inductor_freezing() -> None:
    """Inductor's ``freezing`` for the graphs compiled from now on (parameters become
    constants: prepacked weights, convolutions fused with what follows): what
    ``vtk.load(..., compile=True)`` uses. Only the private global config switches it (given
    in ``torch.compile(options=...)`` it had no effect, measured), and it applies to graphs
    compiled without gradients only, so training elsewhere in the process is not affected."""
    import torch._inductor.config as inductor

    inductor.freezing = True


def recipe_config_given() -> bool:
    """True while the Lightning CLI builds a LightningModule from a recipe.

    The CLI then gives the module its config (``class_path`` / ``init_args``) as its
    hyper-parameters, so a checkpoint can rebuild its network; a network built in Python is a
    module, which belongs in the state_dict, not in the hyper-parameters. Lightning keeps that
    config in a private ``ContextVar``, with no public way to ask.
    """
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    return _given_hyperparameters.get() is not None


def batches_trained_this_epoch(trainer: Any) -> tuple[int, int]:
    """``(epoch, batches of it already trained)`` of a fitting trainer: where a checkpoint
    saved now would resume. Lightning's loops count it; the count is not a public attribute."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return int(trainer.current_epoch), int(progress.processed)


class GatheredListStates:
    """A torchmetrics ``Metric`` mixin: list states gathered as whole lists across processes.

    torchmetrics gathers a list state one tensor at a time, which needs the same number of
    items on every process; vtk's evaluation shards differ by one image on an odd-sized set
    (every image scored once, none repeated). Here each list state is gathered as one object
    per process, in rank order: one collective per state, any number of items. torchmetrics
    exposes no hook for this, so the private ``_sync_dist`` is overridden (reading the private
    ``_reductions``, the metric's state names).
    """

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        group = process_group or self.process_group  # type: ignore[attr-defined]
        states = list(self._reductions)  # type: ignore[attr-defined]
        local = {attr: [_to_cpu(x) for x in getattr(self, attr)] for attr in states}
        gathered: list[dict[str, list[Any]]] = [{} for _ in range(dist.get_world_size(group))]
        dist.all_gather_object(gathered, local, group=group)
        device = self.device  # type: ignore[attr-defined]
        for attr in states:
            setattr(self, attr, [_to(x, device) for part in gathered for x in part[attr]])


def _to_cpu(x: Any) -> Any:
    return x.cpu() if isinstance(x, Tensor) else x


def _to(x: Any, device: Any) -> Any:
    return x.to(device) if isinstance(x, Tensor) else x
