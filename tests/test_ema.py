"""EMA of the weights with Lightning's own ``EMAWeightAveraging`` on a vtk task: validation and
the saved checkpoint hold the EMA weights, and a run resumed mid-epoch ends with the same EMA
weights as the uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import quiet_trainer
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from vtk.data import DemoClassificationDataModule
from vtk.data.transforms import eval_transform
from vtk.models import Classifier, ResNet
from vtk.tasks import ClassificationTask


class Unaugmented(DemoClassificationDataModule):
    """Training without random augmentation: a resumed run does not replay the interrupted
    run's augmentation draws (Lightning restores no RNG state), which is not what is tested."""

    def train_transform(self):
        return eval_transform(self.eval_spec())


def _task() -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(Classifier(ResNet("resnet18"), 10))


class StopAt(Callback):
    """Stops the run after ``step`` optimizer steps, as a killed job would (the LR schedule is
    still the 6-step run's)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _fit(
    root: Path, stop_at: int | None = None, ckpt_path: str | None = None
) -> ClassificationTask:
    demo = Unaugmented(image_size=32, batch_size=4, num_workers=0)
    task = _task()
    checkpoint = ModelCheckpoint(dirpath=root, filename="{step}", auto_insert_metric_name=False, every_n_train_steps=3,
                                 save_top_k=-1)  # fmt: skip
    trainer = quiet_trainer(
        root, max_steps=6, limit_val_batches=0, enable_checkpointing=True,
        callbacks=[EMAWeightAveraging(decay=0.9), checkpoint]
        + ([StopAt(stop_at)] if stop_at else []),
    )  # fmt: skip
    trainer.fit(task, datamodule=demo, ckpt_path=ckpt_path)
    return task


def test_ema_weights_are_saved_and_survive_a_resume(tmp_path) -> None:
    whole = _fit(tmp_path / "whole")  # after fit the task holds the EMA weights
    ckpt = torch.load(tmp_path / "whole" / "6.ckpt", weights_only=False)
    ema = {k: v for k, v in ckpt["state_dict"].items() if v.is_floating_point()}
    current = ckpt["current_model_state"]
    # the checkpoint's state_dict is the EMA, which differs from the trained weights
    name = "model.head.fc.weight"
    assert not torch.equal(ema[name], current[name])
    for k, v in ema.items():
        torch.testing.assert_close(whole.state_dict()[k], v, rtol=0, atol=0)
    # interrupted after step 3 (mid-epoch), resumed from that checkpoint to step 6
    _fit(tmp_path / "first", stop_at=3)
    resumed = _fit(tmp_path / "resumed", ckpt_path=str(tmp_path / "first" / "3.ckpt"))
    for k, v in ema.items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)
