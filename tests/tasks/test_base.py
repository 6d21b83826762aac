"""VisionTask's parameter groups: a lower backbone LR and no weight decay on norm layers and
biases, for every task, through the optimizer and LR schedule of a real run."""

from __future__ import annotations

import re
from functools import partial

import pytest
import torch
from helpers import quiet_trainer
from lightning.pytorch import Callback
from torch import nn

from vtk.data import DemoClassificationDataModule
from vtk.errors import ConfigError, TrainingError
from vtk.models import FCOS, Classifier, ResNet
from vtk.optim import NORM_LAYERS
from vtk.tasks import (
    BinarySegmentationTask,
    ClassificationTask,
    DetectionTask,
    MultiLabelClassificationTask,
    SegmentationTask,
    VisionTask,
)


def _optimizer_after_a_step(task, tmp_path, demo) -> torch.optim.Optimizer:
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(task, datamodule=demo)
    return trainer.optimizers[0]


def test_backbone_lr_mult_and_no_decay_on_norm_and_bias(tmp_path) -> None:
    demo = DemoClassificationDataModule(image_size=32, batch_size=4, num_workers=0)
    model = Classifier(ResNet("resnet18"), demo.num_classes)
    task = ClassificationTask(
        model, optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05),
        backbone_lr_mult=0.1, norm_bias_decay=False,
    )  # fmt: skip
    optimizer = _optimizer_after_a_step(task, tmp_path, demo)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert list(groups) == ["rest", "rest/no_decay", "backbone", "backbone/no_decay"]
    # every trainable parameter in exactly one group
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in task.parameters() if p.requires_grad)
    backbone = {id(p) for p in model.backbone.parameters()}
    exempt = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS)
              for p in m.parameters(recurse=False)}  # fmt: skip
    exempt |= {id(p) for n, p in model.named_parameters() if n.endswith(".bias")}
    for name, g in groups.items():
        assert all((id(p) in backbone) == name.startswith("backbone") for p in g["params"]), name
        assert all((id(p) in exempt) == name.endswith("no_decay") for p in g["params"]), name
        assert g["weight_decay"] == (0.0 if name.endswith("no_decay") else 0.05)
    # the schedule scales every group alike: the backbone stays at a tenth of the rest
    assert groups["backbone"]["lr"] == pytest.approx(0.1 * groups["rest"]["lr"])
    assert groups["backbone"]["initial_lr"] == pytest.approx(1e-4)
    assert groups["rest"]["initial_lr"] == pytest.approx(1e-3)
    assert groups["rest"]["params"] == [model.head.fc.weight]  # the one decayed non-backbone tensor


def test_defaults_keep_one_group(tmp_path) -> None:
    demo = DemoClassificationDataModule(image_size=32, batch_size=4, num_workers=0)
    task = ClassificationTask(Classifier(ResNet("resnet18"), demo.num_classes))
    (group,) = _optimizer_after_a_step(task, tmp_path, demo).param_groups
    assert group["name"] == "rest" and group["weight_decay"] == 1e-4


def test_a_detectors_backbone_is_its_body_not_the_fpn() -> None:
    body = ResNet("resnet18", out_indices=(1, 2, 3))
    task = DetectionTask(FCOS(body, 3, min_size=64, max_size=64),
                         backbone_lr_mult=0.1)  # fmt: skip
    groups = {g["name"]: g for g in task.parameter_groups()}
    assert {id(p) for p in groups["backbone"]["params"]} == {
        id(p) for p in body.parameters() if p.requires_grad
    }
    fpn = {id(p) for p in task.model.backbone.fpn.parameters()}
    assert fpn <= {id(p) for p in groups["rest"]["params"]}


def test_backbone_lr_mult_without_a_backbone_is_a_clear_error() -> None:
    class Plain(nn.Module):
        num_classes = 2

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

    with pytest.raises(ConfigError, match="Plain has no backbone"):
        ClassificationTask(Plain(), backbone_lr_mult=0.1).parameter_groups()
    with pytest.raises(ConfigError, match="backbone_lr_mult must be 0 or more"):
        ClassificationTask(Plain(), backbone_lr_mult=-1)


# -- a run that goes wrong says so -------------------------------------------------------------
class Poisoned(nn.Module):
    """A classifier whose logits are NaN at the given training calls (a bad batch)."""

    def __init__(self, inner: nn.Module, bad_calls: set[int]) -> None:
        super().__init__()
        self.inner, self.bad_calls, self.calls = inner, bad_calls, 0
        self.num_classes = inner.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls in self.bad_calls:
                out = out * float("nan")
        return out


def _demo() -> DemoClassificationDataModule:
    return DemoClassificationDataModule(image_size=32, batch_size=4, num_workers=0)


def test_a_non_finite_loss_stops_the_run_with_where_and_what_to_try(tmp_path) -> None:
    demo = _demo()
    model = Classifier(ResNet("resnet18"), demo.num_classes)
    task = ClassificationTask(model, optimizer=partial(torch.optim.SGD, lr=1e12))
    with pytest.raises(TrainingError) as caught:
        quiet_trainer(tmp_path, max_steps=20, limit_val_batches=0).fit(task, datamodule=demo)
    message = str(caught.value)
    assert "training stopped at step " in message and "(epoch 0)" in message
    assert "not finite (loss=nan)" in message
    assert re.search(r"at lr [0-9.]+e\+1[12];", message)  # the poly schedule's LR of the step
    assert ".png" in message  # the batch's files
    assert "--model.init_args.nonfinite_skips" in message and "--trainer.precision" in message
    # the step that would have made them non-finite was not taken
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bounded_skips_leave_weights_and_statistics_as_they_were(tmp_path) -> None:
    demo = _demo()
    torch.manual_seed(0)
    model = Poisoned(Classifier(ResNet("resnet18"), demo.num_classes), bad_calls={2})
    task = ClassificationTask(model, nonfinite_skips=1)
    states = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            states.append({k: v.clone() for k, v in model.state_dict().items()})

    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0, callbacks=[Record()])
    trainer.fit(task, datamodule=demo)
    assert task.skipped_steps == 1
    assert trainer.callback_metrics["train/skipped_steps"] == 1
    # step 2 was skipped: weights and BatchNorm statistics after it are those after step 1
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, msg=key)
    assert any(not torch.equal(states[2][k], states[1][k]) for k in states[1])  # step 3 trained
    assert all(torch.isfinite(v.float()).all() for v in model.state_dict().values())


def test_more_non_finite_steps_than_skips_stop(tmp_path) -> None:
    demo = _demo()
    model = Poisoned(Classifier(ResNet("resnet18"), demo.num_classes), bad_calls={1, 3})
    task = ClassificationTask(model, nonfinite_skips=1)
    with pytest.raises(TrainingError, match="1 steps were skipped before"):
        quiet_trainer(tmp_path, max_steps=5, limit_val_batches=0).fit(task, datamodule=demo)


class Tiny(nn.Module):
    """A two-layer classifier: compiles in seconds."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean((2, 3)))


@pytest.mark.slow  # an Inductor compile
def test_compile_model_compiles_in_place_and_keeps_the_names(tmp_path) -> None:
    model = Tiny()
    keys = list(model.state_dict())
    before = model.conv.weight.detach().clone()
    task = ClassificationTask(model, compile_model=True)
    quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(task, datamodule=_demo())
    assert task.model is model and model._compiled_call_impl is not None  # nn.Module.compile
    assert list(task.model.state_dict()) == keys  # checkpoints keep their keys
    assert not torch.equal(model.conv.weight, before)  # and it trained


@pytest.mark.parametrize(
    "task",
    [ClassificationTask, MultiLabelClassificationTask, SegmentationTask, BinarySegmentationTask,
     DetectionTask],
)  # fmt: skip
def test_every_task_takes_the_common_arguments_through_kwargs(task) -> None:
    """A task passes ``**kwargs`` to VisionTask, and the recipe parser (jsonargparse, reading
    the source) must find them there: the data's class names, ids and input spec are linked to
    these keys, and a key it cannot find is a link silently not made."""
    import inspect

    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(task, "task")
    found = {a.dest.removeprefix("task.") for a in parser._actions if a.dest.startswith("task.")}
    common = set(inspect.signature(VisionTask.__init__).parameters) - {"self"}
    assert common <= found, f"{task.__name__} hides {sorted(common - found)} from recipes"
    own = set(inspect.signature(task.__init__).parameters) - {"self", "kwargs"}
    parents = set().union(
        *(inspect.signature(c.__init__).parameters for c in task.__mro__[1:]
          if c.__module__.startswith(("tasks", "vtk.tasks")))
    )  # fmt: skip
    keys = {k for k in found if not k.endswith(".help")}
    assert keys <= own | parents | common, f"not {task.__name__}'s: {sorted(keys - own - parents)}"


def test_the_data_normalises_as_the_weights_and_the_checkpoint_keeps_it(caplog) -> None:
    """A backbone whose weights were trained on other statistics (timm's ra4 tags: 0.5) makes
    the data normalise so, unless the data gives its own (a warning names both); the task's
    input spec, which its checkpoint, exports and predictions use, follows; a checkpoint's
    spec wins over the network's (resumed and evaluated runs normalise as they trained)."""
    from vtk.data import DemoClassificationDataModule
    from vtk.models import Classifier, ResNet
    from vtk.tasks import ClassificationTask

    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def build(**data_args):
        backbone = ResNet("resnet18", out_indices=(3,))
        backbone.weights_norm = half  # (what loading such weights sets)
        data = DemoClassificationDataModule(num_workers=0, **data_args)
        task = ClassificationTask(Classifier(backbone, data.num_classes),
                                  input_spec=data.input_spec)  # fmt: skip
        return task, data

    task, data = build()
    task.normalise_data_as_weights(data)
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.5, 0.5, 0.5)
    assert task.input_spec.mean == (0.5, 0.5, 0.5)
    assert task.hparams["input_spec"]["mean"] == [0.5, 0.5, 0.5]  # what the checkpoint keeps
    data.setup("validate")
    image = data.datasets["val"][0]["image"]  # the pipeline normalises with 0.5
    assert image.min() >= -1.0 - 1e-6 and image.max() <= 1.0 + 1e-6

    task, data = build(mean=(0.4, 0.4, 0.4), std=(0.3, 0.3, 0.3))
    with caplog.at_level("WARNING", logger="vtk"):
        task.normalise_data_as_weights(data)
    assert data.mean == (0.4, 0.4, 0.4) and "the backbone's weights says mean [0.5" in caplog.text

    task, data = build()
    task.normalise_data_as_weights(data, {"mean": [0.2, 0.3, 0.4], "std": [0.1, 0.1, 0.1]})
    assert data.mean == (0.2, 0.3, 0.4) and task.input_spec.std == (0.1, 0.1, 0.1)
