"""What every vtk task shares: the injected model, the optimiser and the per-step LR schedule.

Optimiser and scheduler come from the recipe as callables (Lightning CLI's dependency
injection): ``optimizer(params)`` and ``lr_scheduler(optimizer, total_steps)``, where
``total_steps`` is the run's length in optimiser steps as the Trainer computes it (from
``max_steps``, or ``max_epochs`` x steps per epoch). The scheduler is stepped every step.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger("vtk")

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
        #: the total batch the recipe's LR is for (``vtk fit --scale_lr_from N``): the LR is
        #: scaled linearly to this run's total batch; not a hyper-parameter (set by the CLI)
        self.lr_base_batch: int | None = None

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(params)
        else:
            optimizer = SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        if self.lr_base_batch:
            self._scale_lr(optimizer, self.lr_base_batch)
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

    def _scale_lr(self, optimizer: Optimizer, base_batch: int) -> None:
        """The linear scaling rule (Goyal et al. 2017, as torchvision's and mmdet's references):
        LR x total batch / the batch the recipe's LR is for. Before a resumed run's optimiser
        state is restored, so a resumed run keeps the LR it had."""
        trainer = self.trainer
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if not isinstance(batch_size, int):
            raise ConfigError("--scale_lr_from needs a DataModule with a batch_size.")
        total = batch_size * trainer.world_size * trainer.accumulate_grad_batches
        factor = total / base_batch
        for group in optimizer.param_groups:
            group["lr"] *= factor
        if trainer.is_global_zero:
            log.info(
                "LR scaled x%.4g to %.4g (linear rule): total batch %d = batch_size %d x %d "
                "processes x %d accumulated, the recipe's LR is for %d",
                factor, optimizer.param_groups[0]["lr"], total, batch_size, trainer.world_size,
                trainer.accumulate_grad_batches, base_batch,
            )  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint whose tensors do not fit this model, naming them, before Lightning
        fails on them: typically one trained for another number of classes than the data has."""
        own = self.state_dict()
        saved_keys = set(checkpoint.get("state_dict", {}))
        missing, unexpected = sorted(set(own) - saved_keys), sorted(saved_keys - set(own))
        if saved_keys and (missing or unexpected):
            raise ConfigError(
                "the checkpoint was saved from a different model (another recipe?): "
                + "; ".join(
                    f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                    for what, keys in (
                        ("only in the checkpoint:", unexpected),
                        ("only in this model:", missing),
                    )
                    if keys
                )
                + ". Use the recipe that saved it."
            )
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
