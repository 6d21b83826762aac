"""vtk/_compat.py: each private internal vtk relies on still behaves as vtk expects. A failure
here means the pinned Lightning or torchmetrics changed it: update the shim, not its callers."""

from __future__ import annotations

import inspect

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from vtk._compat import GatheredListStates, batches_trained_this_epoch, recipe_config_given


class Probe(LightningModule):
    seen: list[bool] = []

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        Probe.seen.append(recipe_config_given())
        self.layer = torch.nn.Linear(width, 1)


class Data(LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(12, 3)), batch_size=2)


def test_the_cli_gives_a_module_its_config_and_python_does_not() -> None:
    Probe.seen = []
    Probe()
    LightningCLI(Probe, Data, run=False, args=["--model.width", "3", "--trainer.logger", "false"])
    assert Probe.seen == [False, True]


class Position(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.positions: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.positions.append(batches_trained_this_epoch(self.trainer))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_batches_trained_this_epoch_counts_within_each_epoch() -> None:
    model = Position()
    Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(model, datamodule=Data())  # fmt: skip
    assert model.positions == [(e, b) for e in range(2) for b in range(1, 7)]


def test_metric_states_and_the_sync_hook_are_where_the_mixin_expects() -> None:
    metric = MeanAveragePrecision()
    assert set(metric._reductions) >= {"detection_box", "groundtruth_box", "detection_scores"}
    assert all(isinstance(getattr(metric, s), list) for s in metric._reductions)
    sync = inspect.signature(Metric._sync_dist).parameters
    assert list(sync) == ["self", "dist_sync_fn", "process_group"]
    assert "_sync_dist" in inspect.getsource(Metric.sync)  # sync() goes through the override
    assert issubclass(type("M", (GatheredListStates, MeanAveragePrecision), {}), Metric)


def test_lightning_still_names_its_precision_values() -> None:
    from typing import get_args

    from vtk._compat import PRECISION_INPUT

    values = {v for part in get_args(PRECISION_INPUT) for v in (get_args(part) or (part,))}
    assert {"bf16-mixed", "16-mixed", "32-true", 32} <= values


def test_inductor_still_has_a_global_freezing_switch() -> None:
    import torch._inductor.config as inductor

    from vtk._compat import enable_inductor_freezing

    before = inductor.freezing
    try:
        enable_inductor_freezing()
        assert inductor.freezing is True
    finally:
        inductor.freezing = before
