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
