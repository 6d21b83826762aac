"""vtk fit --time_budget: the epochs and the LR schedule are fitted to the minutes given, from
the measured epoch time (a clock that gives each epoch 10 s here), and training stops at the
budget."""

from __future__ import annotations

import pytest
import torch
from helpers import QUIET

from vtk.budget import TimeBudget


@pytest.mark.parametrize(("minutes", "epochs"), [(1.0, 6), (0.25, 2)])
def test_the_run_is_fitted_to_the_budget(run_vtk, vtk_log, tmp_path, monkeypatch, minutes,
                                         epochs) -> None:  # fmt: skip
    monkeypatch.setattr(TimeBudget, "elapsed", lambda self: 10.0 * self.epochs_done)
    code = run_vtk(
        "fit", "demo_classification", "--time_budget", minutes, "--trainer.max_epochs", 3,
        "--trainer.limit_train_batches", 2, "--trainer.limit_val_batches", 1,
        "--trainer.check_val_every_n_epoch", 10,
        "--data.image_size", 32, *QUIET,
    )  # fmt: skip
    assert code == 0, code
    last = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False, map_location="cpu")
    assert last["global_step"] == 2 * epochs
    (scheduler,) = last["lr_schedulers"]
    assert scheduler["total_steps"] == 2 * epochs  # the LR schedule ends with the run
    assert f"{epochs} epochs fit in" in vtk_log.text
    # the last epoch validated (every 10 epochs otherwise): the best checkpoint is the end's
    (best,) = tmp_path.rglob("best*.ckpt")
    assert torch.load(best, weights_only=False, map_location="cpu")["global_step"] == 2 * epochs


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        TimeBudget(0)
