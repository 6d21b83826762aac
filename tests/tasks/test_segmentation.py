"""SegmentationTask: training steps, exact metrics against a hand count, losses, optimisation."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torchvision
from helpers import quiet_trainer
from torch import nn

from vtk.data import VOCSegmentationDataModule
from vtk.data.io import read_mask
from vtk.data.segmentation import voc_samples
from vtk.data.transforms import segmentation_train
from vtk.errors import ConfigError
from vtk.losses import CrossEntropyLoss, DiceLoss
from vtk.models import DeepLabV3Head, FCNHead, ResNet, Segmenter
from vtk.optim import WarmupPolyLR
from vtk.spec import IGNORE_INDEX
from vtk.tasks import SegmentationTask


def _data(root) -> VOCSegmentationDataModule:
    return VOCSegmentationDataModule(
        root=str(root),
        train_split="train",
        test_split="val",
        crop_size=32,
        batch_size=2,
        num_workers=0,
    )


def _task(num_classes: int = 21, **kwargs) -> SegmentationTask:
    model = Segmenter(
        ResNet("resnet18", output_stride=16),
        head=DeepLabV3Head,
        num_classes=num_classes,
        aux_head=FCNHead,
    )
    return SegmentationTask(model, **kwargs)


def test_fit_validate_test(voc_root, tmp_path) -> None:
    task = _task(class_names=_data(voc_root).class_names)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, datamodule=_data(voc_root))
    logged = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/aux_loss",
        "train/lr",
        "val/loss",
        "val/mIoU",
        "val/acc_global",
    ):
        assert key in logged, key
    per_class = {k: v for k, v in logged.items() if k.startswith(("val/IoU/", "val/acc/"))}
    assert len(per_class) == 2 * 21 and "val/IoU/aeroplane" in per_class  # at every validation
    assert all(torch.isfinite(v) for k, v in logged.items() if k not in per_class)
    assert all(torch.isnan(v) or 0 <= v <= 1 for v in per_class.values())  # NaN: class absent
    (result,) = trainer.test(task, datamodule=_data(voc_root), verbose=False)
    assert 0 <= result["test/mIoU"] <= 1
    assert "test/IoU/background" in result
    ious = [v for k, v in result.items() if k.startswith("test/IoU/")]
    assert len(ious) == 21 and all(np.isnan(v) or 0 <= v <= 1 for v in ious)


def test_a_class_in_neither_labels_nor_predictions_has_iou_nan(voc_root, tmp_path) -> None:
    dm = _data(voc_root)
    task = SegmentationTask(ConstantModel(21, 1), class_names=dm.class_names)
    (result,) = quiet_trainer(tmp_path).test(task, datamodule=dm, verbose=False)
    assert np.isnan(result["test/IoU/tvmonitor"])  # absent from both: NaN, not 0
    assert not np.isnan(result["test/IoU/aeroplane"])  # predicted everywhere: a number


class ConstantModel(nn.Module):
    """Predicts ``label`` everywhere."""

    def __init__(self, num_classes: int, label: int) -> None:
        super().__init__()
        self.num_classes, self.label = num_classes, label
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[-2:]) + self.dummy
        logits[:, self.label] = 1
        return {"out": logits}


def test_metrics_equal_a_hand_count_over_the_split(voc_root, tmp_path) -> None:
    """VOC's mIoU: one confusion matrix over the split, classes in neither labels nor predictions
    left out, 255 and padding ignored."""
    label = 1
    masks = [read_mask(s.mask) for s in voc_samples(voc_root, "val")]
    pixels = np.concatenate([m.ravel() for m in masks])
    pixels = pixels[pixels != IGNORE_INDEX]
    ious = []
    for c in range(21):
        in_label, in_pred = pixels == c, np.full(pixels.shape, c == label)
        union = (in_label | in_pred).sum()
        if union:
            ious.append((in_label & in_pred).sum() / union)
    expected_miou = float(np.mean(ious))
    expected_acc = float((pixels == label).mean())
    # class average (SegNet's): the recall of each labelled class, 1 for the predicted one
    expected_acc_class = 1 / len(np.unique(pixels)) if label in pixels else 0.0

    dm = _data(voc_root)
    dm.crop_size = 64  # evaluation pads every image to 64x64: padding must not count
    (result,) = quiet_trainer(tmp_path).validate(
        SegmentationTask(ConstantModel(21, label)), datamodule=dm, verbose=False
    )
    assert result["val/mIoU"] == pytest.approx(expected_miou, abs=1e-6)
    assert result["val/acc_global"] == pytest.approx(expected_acc, abs=1e-6)
    assert result["val/acc_class"] == pytest.approx(expected_acc_class, abs=1e-6)


def test_loss_of_a_fully_ignored_crop_is_zero_not_nan() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE_INDEX)
    ce = CrossEntropyLoss()
    loss = ce(logits, target, IGNORE_INDEX)
    assert loss.item() == 0
    loss.backward()
    target[0, 0, 0] = 1
    expected = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(ce(logits, target, IGNORE_INDEX), expected)


def test_default_optimisation_is_sgd_with_a_per_step_poly_schedule(voc_root, tmp_path) -> None:
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(_task(), datamodule=_data(voc_root))
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, WarmupPolyLR) and config.interval == "step"
    assert config.scheduler.total_steps == 3 and config.scheduler.last_epoch == 3


def test_frozen_parameters_are_left_out_of_the_optimiser(voc_root, tmp_path) -> None:
    weights = tmp_path / "resnet18.pth"  # frozen stages stay frozen only over given weights
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    backbone = ResNet("resnet18", frozen_stages=1, weights=str(weights))
    model = Segmenter(backbone, head=DeepLabV3Head, num_classes=21)
    task = SegmentationTask(model, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, datamodule=_data(voc_root))
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == n_trainable
    assert n_trainable < sum(p.numel() for p in model.parameters())


def test_python_built_task_keeps_the_model_out_of_hparams() -> None:
    task = _task(aux_weight=0.3)
    assert "model" not in task.hparams and task.hparams["aux_weight"] == 0.3


def test_a_model_without_num_classes_is_refused() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        SegmentationTask(nn.Conv2d(3, 3, 1))
    with pytest.raises(ConfigError, match="2 class names"):
        _task(num_classes=3, class_names=["a", "b"])


def test_each_image_is_evaluated_alone_whatever_shares_its_batch() -> None:
    torch.manual_seed(0)
    task = _task(4).eval()
    images = [torch.randn(3, 40, 48), torch.randn(3, 33, 37), torch.randn(3, 40, 48)]
    with torch.no_grad():
        together = task.logits(images)
        alone = [task.logits([x])[0] for x in images]
        for a, b in zip(together, alone):
            assert a.shape[-2:] == b.shape[-2:]
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        task.eval_mode, task.window = "slide", 64  # a window covering the image is "whole"
        for a, b in zip(task.logits(images), alone):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


class Recorder(ConstantModel):
    """ConstantModel that counts its calls."""

    calls = 0

    def forward(self, x):
        Recorder.calls += len(x)
        return super().forward(x)


def test_test_time_augmentation_in_test_and_predict_only(voc_root, tmp_path) -> None:
    dm = _data(voc_root)
    task = SegmentationTask(Recorder(21, 1), tta_scales=[0.5, 1.0], tta_flip=True)
    Recorder.calls = 0
    quiet_trainer(tmp_path).validate(task, datamodule=dm, verbose=False)
    assert Recorder.calls == 3  # three validation images, once each
    Recorder.calls = 0
    quiet_trainer(tmp_path).test(task, datamodule=dm, verbose=False)
    assert Recorder.calls == 3 * 2 * 2  # two scales x (image + mirror)


def test_confusion_matrix_of_vtk_test_equals_a_hand_count(voc_root, tmp_path) -> None:
    dm = _data(voc_root)
    task = SegmentationTask(ConstantModel(21, 1), class_names=dm.class_names)
    task.output_dir = str(tmp_path)
    quiet_trainer(tmp_path).test(task, datamodule=dm, verbose=False)
    rows = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["true \\ predicted", "background", "aeroplane"]
    matrix = np.array([[int(v) for v in r.split(",")[1:]] for r in rows[1:]])
    pixels = np.concatenate([read_mask(s.mask).ravel() for s in voc_samples(voc_root, "val")])
    labelled = pixels[pixels != IGNORE_INDEX]
    assert matrix[:, 1].tolist() == np.bincount(labelled, minlength=21).tolist()  # all "1"
    assert matrix.sum() == matrix[:, 1].sum() == labelled.size
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_auto_class_weights_come_from_the_training_masks(voc_root, tmp_path) -> None:
    from vtk.data.masks import median_frequency_weights

    dm = _data(voc_root)
    ce = CrossEntropyLoss(class_weights="auto")
    task = _task(21, losses=[ce, DiceLoss(weight=0.5)])
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    expected = median_frequency_weights(dm.split_counts("train"), 21)
    assert ce.class_weights.tolist() == pytest.approx(expected)
    for key in ("train/loss", "train/loss_ce", "train/loss_dice"):
        assert key in trainer.callback_metrics, key


def test_the_total_loss_is_the_weighted_sum_of_the_terms() -> None:
    task = _task(3, losses=[CrossEntropyLoss(), DiceLoss(weight=0.5)])
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    losses = task.pixel_loss(logits, target)
    torch.testing.assert_close(losses["loss"], losses["loss_ce"] + 0.5 * losses["loss_dice"])


def test_auto_class_weights_travel_in_the_checkpoint(voc_root, tmp_path) -> None:
    """Weights resolved from the training masks at fit are saved, so a checkpoint evaluates
    (validate, test) and resumes without the training masks, with the weights of its run."""
    dm = _data(voc_root)
    task = _task(losses=[CrossEntropyLoss(class_weights="auto")])
    trainer = quiet_trainer(
        tmp_path, max_steps=2, limit_val_batches=0, enable_checkpointing=True,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    resolved = task.losses[0].class_weights.clone()
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["vtk_class_weights"] == {"0": resolved.tolist()}

    # the training masks are gone: a fresh task takes the weights from the checkpoint
    train_only = {s.id for s in voc_samples(voc_root, "train")} - {
        s.id for s in voc_samples(voc_root, "val")
    }
    assert train_only
    for i in train_only:
        (voc_root / "SegmentationClass" / f"{i}.png").unlink()
    fresh = _task(losses=[CrossEntropyLoss(class_weights="auto")])
    for run in ("validate", "test"):
        (result,) = getattr(quiet_trainer(tmp_path), run)(
            fresh, datamodule=_data(voc_root), ckpt_path=ckpt, verbose=False
        )
        assert np.isfinite(result[f"{'val' if run == 'validate' else 'test'}/loss"])
        torch.testing.assert_close(fresh.losses[0].class_weights, resolved)


def test_channels_last_trains_to_the_same_weights(voc_root, tmp_path) -> None:
    """One optimiser step in NHWC moves the weights as in NCHW (up to float reordering, which
    BatchNorm over 3x3 maps amplifies: compared as a share of the update)."""

    def step(channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)  # no dropout: its masks are drawn in memory order, NHWC differs
        model = Segmenter(
            ResNet("resnet18", output_stride=16),
            head=partial(DeepLabV3Head, dropout=0.0),
            num_classes=21,
            aux_head=partial(FCNHead, dropout=0.0),
        )
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        task = SegmentationTask(model, channels_last=channels_last)
        dm = _data(voc_root)  # no random augmentation: the whole 40x48 image, no flip
        dm.train_transform = lambda: segmentation_train((40, 48), (1.0, 1.0), hflip=0.0)
        quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(task, datamodule=dm)
        conv = task.model.backbone.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return before, after - before

    before, plain = step(False)
    before_nhwc, nhwc = step(True)
    torch.testing.assert_close(before_nhwc, before)
    assert plain.norm() > 0
    assert (nhwc - plain).norm() < 1e-2 * plain.norm()
