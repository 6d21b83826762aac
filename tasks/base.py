"""What every vtk task shares: the injected model, the optimiser and the per-step LR schedule.

Optimiser and scheduler come from the recipe as callables (Lightning CLI's dependency
injection): ``optimizer(params)`` and ``lr_scheduler(optimizer, total_steps)``, where
``total_steps`` is the run's length in optimiser steps as the Trainer computes it (from
``max_steps``, or ``max_epochs`` x steps per epoch). The scheduler is stepped every step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lightning.pytorch import LightningModule
from torch import nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from vtk.errors import ConfigError
from vtk.optim import WarmupPolyLR

try:  # set while the Lightning CLI instantiates a module: the recipe's own config
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # pragma: no cover - a Lightning without it: save no model config
    _given_hyperparameters = None

OptimizerFactory = Callable[[Iterable], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]


class VisionTask(LightningModule):
    """Base of the vtk tasks.

    Args:
        model: the ``torch.nn`` model (from ``vtk.models``), built by the recipe.
        optimizer: ``optimizer(params)``; default SGD (lr 0.01, momentum 0.9, wd 1e-4).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps)``; default poly (power 0.9).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        # Under `vtk` the hyper-parameters are the recipe's config (class_path / init_args), so
        # a checkpoint can rebuild its model; a model built in Python is a module, which
        # belongs in the state_dict, not in the hyper-parameters.
        from_recipe = (
            _given_hyperparameters is not None and _given_hyperparameters.get() is not None
        )
        self.save_hyperparameters(ignore=None if from_recipe else ["model"])
        self.model = model
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(params)
        else:
            optimizer = SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        total = self.trainer.estimated_stepping_batches
        if not 0 < total < float("inf"):
            raise ConfigError(
                "cannot size the LR schedule: set trainer.max_steps or trainer.max_epochs."
            )
        factory = self.lr_scheduler_factory or WarmupPolyLR
        scheduler = factory(optimizer, int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint whose tensors do not fit this model, naming them, before Lightning
        fails on them: typically one trained for another number of classes than the data has."""
        own = self.state_dict()
        mismatched = [
            f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})"
            for k, v in checkpoint.get("state_dict", {}).items()
            if k in own and hasattr(v, "shape") and v.shape != own[k].shape
        ]
        if not mismatched:
            return
        saved = checkpoint.get("hyper_parameters", {}).get("model", {})
        saved_classes = (
            saved.get("init_args", {}).get("num_classes") if isinstance(saved, dict) else None
        )
        what = (
            f"it was trained for num_classes={saved_classes}, the data has {getattr(self, 'num_classes', '?')}"
            if saved_classes is not None and saved_classes != getattr(self, "num_classes", None)
            else "it was saved from a differently configured model"
        )
        raise ConfigError(
            f"the checkpoint does not fit this model: {what}. Tensors that differ: "
            f"{'; '.join(mismatched[:4])}. Use the data the checkpoint was trained on, or fine-tune "
            "from it with the model's weights argument instead of --ckpt_path."
        )

    def log_lr(self) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
