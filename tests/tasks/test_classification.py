"""ClassificationTask: a training run, metrics against a hand count, label smoothing."""

from __future__ import annotations

import pytest
import torch
from helpers import ROOT, quiet_trainer
from torch import nn

from vtk.data import DemoClassificationDataModule
from vtk.errors import ConfigError
from vtk.models import Classifier, ResNet
from vtk.tasks import ClassificationTask


@pytest.fixture(scope="module")
def demo() -> DemoClassificationDataModule:
    return DemoClassificationDataModule(image_size=32, batch_size=8, num_workers=0)


def test_fit_validate_test(demo, tmp_path) -> None:
    task = ClassificationTask(Classifier(ResNet("resnet18"), demo.num_classes), label_smoothing=0.1)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(task, datamodule=demo)
    for key in ("train/loss", "train/acc1", "train/lr", "val/loss", "val/acc1", "val/acc5"):
        assert key in trainer.callback_metrics, key
    (result,) = trainer.test(task, datamodule=demo, verbose=False, ckpt_path=None)
    # test/acc1 is the share of test images whose top class is their label, counted by hand
    correct = total = 0
    task.eval()
    with torch.no_grad():
        for batch in demo.test_dataloader():
            correct += int((task.model(batch["image"]).argmax(1) == batch["label"]).sum())
            total += len(batch["label"])
    assert total == 200 and result["test/acc1"] == pytest.approx(correct / total)


class Fixed(nn.Module):
    """Logits that rank the classes 2 > 0 > 1 > 3 for every image."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 1.0, 3.0, 0.0]]).expand(len(x), 4) + self.dummy


def test_top1_top2_equal_a_hand_count(demo, tmp_path) -> None:
    demo.setup("validate")
    labels = torch.tensor([s.label for s in demo.datasets["val"].samples])
    task = ClassificationTask(Fixed())
    task.val_metrics["acc5"] = type(task.val_metrics["acc1"])(4, top_k=2, average="micro")
    (result,) = quiet_trainer(tmp_path).validate(task, datamodule=demo, verbose=False)
    assert result["val/acc1"] == pytest.approx((labels == 2).float().mean().item())
    assert result["val/acc5"] == pytest.approx(
        ((labels == 2) | (labels == 0)).float().mean().item()
    )


def test_label_smoothing_reaches_the_loss(demo) -> None:
    demo.setup("fit")
    batch = next(iter(demo.train_dataloader()))
    plain = ClassificationTask(Fixed())
    smooth = ClassificationTask(Fixed(), label_smoothing=0.2)
    for t in (plain, smooth):
        t.log = lambda *a, **k: None  # no trainer attached
        t.log_lr = lambda: None
    a, b = smooth.training_step(batch, 0).item(), plain.training_step(batch, 0).item()
    expected = torch.nn.functional.cross_entropy(
        Fixed()(batch["image"]), batch["label"], label_smoothing=0.2
    )
    assert a == pytest.approx(expected.item()) and a != pytest.approx(b)
    assert plain.training_step(None, 0) is None  # a batch whose images all failed to decode


def test_model_without_num_classes_is_refused() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        ClassificationTask(nn.Linear(3, 3))


def test_per_class_scores_confusion_matrix_and_mistakes(demo, tmp_path) -> None:
    """The fixed model predicts class 2 for every image: each class's recall and precision, the
    matrix vtk test writes and its mistakes grid follow from the labels, counted by hand."""
    import csv

    from PIL import Image

    demo.setup("test")
    labels = torch.tensor([s.label for s in demo.datasets["test"].samples])
    counts = torch.bincount(labels, minlength=4)
    task = ClassificationTask(Fixed(), class_names=demo.class_names)
    (result,) = quiet_trainer(tmp_path).test(task, datamodule=demo, verbose=False)
    names = demo.class_names
    assert result[f"test/recall/{names[2]}"] == 1.0 and result[f"test/recall/{names[0]}"] == 0.0
    assert result[f"test/precision/{names[2]}"] == pytest.approx(counts[2].item() / len(labels))
    assert result["test/acc_class"] == pytest.approx(0.25)
    with open(tmp_path / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted", *names]
    for k, row in enumerate(rows[1:]):
        assert [int(v) for v in row[1:]] == [0, 0, int(counts[k]), 0]
    grid = Image.open(tmp_path / "mistakes.png")
    assert grid.size == (4 * 130 + 2, 4 * 130 + 2)  # 16 mistakes of 128 px, 2 px apart
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_tensorboard_gets_the_confusion_matrix_and_the_mistakes(demo, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = ClassificationTask(Fixed(), class_names=demo.class_names)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = quiet_trainer(tmp_path, logger=logger, limit_val_batches=2, limit_test_batches=2)
    trainer.validate(task, datamodule=demo, verbose=False)
    trainer.test(task, datamodule=demo, verbose=False)
    events = EventAccumulator(str(logger.log_dir))
    events.Reload()
    assert {"val/confusion_matrix", "test/confusion_matrix", "test/mistakes"} <= set(
        events.Tags()["images"]
    )


def test_a_demo_fit_with_randaugment_erasing_mixup_and_cutmix(fit_demo, tmp_path) -> None:
    """The augmentation options users expect from torchvision's reference, as recipe options,
    in one demo fit: the soft targets reach the loss and the run validates."""
    last = fit_demo(
        "demo_classification", "--data.image_size", "32", "--data.auto_augment", "ra",
        "--data.random_erase", "0.25", "--data.mixup_alpha", "0.2", "--data.cutmix_alpha", "1.0",
        "--model.label_smoothing", "0.1", steps=3,
    )  # fmt: skip
    rows = (last.parent.parent / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [r.split(",")[header.index("train/loss")] for r in rows[1:]]
    assert any(v for v in losses) and "val/acc1" in header


def test_the_documented_stronger_imagenet_line_parses(run_vtk, capsys) -> None:
    """docs/classification.md's command for torchvision's stronger ResNet-50 recipe."""
    import yaml

    line = next(
        line for line in (ROOT / "docs" / "classification.md").read_text().splitlines()
        if line.startswith("vtk fit resnet50_imagenet --data.auto_augment")
    )  # fmt: skip
    assert run_vtk(*line.split()[1:], "--print_config") == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert (data["auto_augment"], data["random_erase"], data["mixup_alpha"],
            data["cutmix_alpha"]) == ("ta_wide", 0.1, 0.2, 1.0)  # fmt: skip
