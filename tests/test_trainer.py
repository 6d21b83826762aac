"""``precision: auto``: resolved for the device the run is on; explicit values obeyed."""

from __future__ import annotations

import pytest
import torch

from vtk.trainer import Trainer, resolve_precision


@pytest.mark.parametrize(
    ("accelerator", "cuda", "expected"),
    [
        ("auto", True, "16-mixed"),
        ("gpu", True, "16-mixed"),
        ("cuda", True, "16-mixed"),
        ("cpu", True, "32-true"),  # a CPU run on a GPU machine
        ("auto", False, "32-true"),
        ("tpu", False, "bf16-mixed"),
    ],
)
def test_auto_precision_for_the_device(monkeypatch, accelerator, cuda, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_precision(accelerator) == expected


def test_trainer_resolves_auto_and_obeys_explicit_values(tmp_path, vtk_log) -> None:
    common = dict(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    trainer = Trainer(precision="auto", **common)
    assert trainer.precision == "32-true"
    assert "precision auto -> 32-true on cpu" in vtk_log.text
    assert Trainer(precision="bf16-mixed", **common).precision == "bf16-mixed"
    assert Trainer(**common).precision == "32-true"  # Lightning's default


def test_a_whole_number_of_batches_stays_a_count(run_vtk, capsys) -> None:
    """``--trainer.limit_val_batches 1`` is one batch, not the fraction 1.0 (every batch)."""
    assert run_vtk("fit", "demo_classification", "--trainer.limit_val_batches", "1",
                   "--trainer.limit_train_batches", "0.5", "--trainer.val_check_interval", "3",
                   "--print_config") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "limit_val_batches: 1\n" in out and "limit_train_batches: 0.5\n" in out
    assert "val_check_interval: 3\n" in out
