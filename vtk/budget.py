"""Training for a wall-clock budget: ``vtk fit RECIPE --time_budget 45`` (minutes).

A budget is how the field compares tools on a machine (ultralytics' ``time=``); a hard stop at
the budget would cut a schedule in the middle, its LR still high. :class:`TimeBudget` instead
fits the run to the budget: after each training epoch it measures the mean time an epoch has
taken so far (validation included, as it recurs), sets the number of epochs that fit in the
budget (``max_epochs``) and stretches or shrinks the per-step LR schedule to end with them
(the scheduler's ``total_steps``: vtk's schedules are closed forms of the step, so the change
takes effect at once), and the last epoch validates whatever ``check_val_every_n_epoch`` says,
so the best checkpoint has seen the end of the schedule. Training also stops at the budget
itself, whatever the estimate, with a validation there.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger("vtk")


class TimeBudget(Callback):
    """Fit the run's epochs and LR schedule to ``minutes`` of wall-clock time (see the module).

    Args:
        minutes: the budget, from the start of training (setup and the sanity check excluded,
            as ultralytics counts its ``time``).
    """

    def __init__(self, minutes: float) -> None:
        if minutes <= 0:
            raise ValueError(f"time_budget is a number of minutes above 0, got {minutes}.")
        self.seconds = 60.0 * minutes
        self.start: float | None = None
        self.epochs_done = 0

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.start is None else time.monotonic() - self.start

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        over = self.elapsed() >= self.seconds
        if not trainer.should_stop and trainer.strategy.reduce_boolean_decision(over, all=False):
            trainer.should_stop = True
            trainer.check_val_every_n_epoch = 1  # Lightning validates a run told to stop
            if trainer.is_global_zero:
                log.info("time budget of %.1f min reached: stopping", self.seconds / 60)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epochs_done += 1  # after the epoch's validation, when it had one
        self._refit(trainer, pl_module)

    def _refit(self, trainer: Trainer, pl_module: LightningModule) -> None:
        elapsed = self.elapsed()
        per_epoch = elapsed / self.epochs_done
        # with time left, at least one more epoch (it ends as planned, or at the budget, and
        # validates either way); the budget spent, none
        epochs = (
            max(self.epochs_done + 1, math.floor(self.seconds / per_epoch))
            if elapsed < self.seconds
            else self.epochs_done
        )
        # every process decides the same (the slowest's estimate)
        estimate = torch.tensor(float(epochs), device=pl_module.device)
        epochs = int(trainer.strategy.reduce(estimate, reduce_op="min"))
        if self.epochs_done == epochs - 1:  # the last epoch validates, whatever the interval
            trainer.check_val_every_n_epoch = 1
        if epochs == trainer.fit_loop.max_epochs:
            return
        trainer.fit_loop.max_epochs = epochs
        steps = trainer.num_training_batches // max(1, trainer.accumulate_grad_batches)
        total = max(1, epochs * steps)
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "total_steps"):
                config.scheduler.total_steps = total
        if trainer.is_global_zero:
            log.info(
                "time budget: %.1f s per epoch so far, %d epochs fit in %.1f min (the LR "
                "schedule now ends at step %d)",
                per_epoch, epochs, self.seconds / 60, total,
            )  # fmt: skip
