"""vtk.tasks.BinarySegmentationTask: the foreground's F1, sensitivity, specificity, accuracy
and AUC counted by hand over the scored pixels only, the threshold chosen on validation and
kept in the checkpoint, predictions and the exported logits at that threshold."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from helpers import quiet_trainer
from torch import nn

from vtk.errors import ConfigError
from vtk.metrics import BinaryThresholdCounts, binary_scores
from vtk.spec import IGNORE_INDEX
from vtk.tasks import BinarySegmentationTask


def test_threshold_counts_equal_a_direct_count() -> None:
    g = torch.Generator().manual_seed(0)
    probs, target = torch.rand(5000, generator=g), (torch.rand(5000, generator=g) > 0.7).long()
    thresholds = [0.1, 0.25, 0.5, 0.5001, 0.9]
    metric = BinaryThresholdCounts(thresholds)
    metric.update(probs[:2000], target[:2000])
    metric.update(probs[2000:], target[2000:])
    for row, t in zip(metric.compute(), thresholds):
        pos, truth = probs >= t, target.bool()
        expected = [(pos & truth).sum(), (pos & ~truth).sum(), (~pos & ~truth).sum(),
                    (~pos & truth).sum()]  # fmt: skip
        assert row.tolist() == [int(v) for v in expected]
    scores = binary_scores(torch.tensor([[3, 1, 10, 2]]))
    assert scores["F1"].item() == pytest.approx(6 / 9)
    assert scores["sensitivity"].item() == pytest.approx(3 / 5)
    assert scores["specificity"].item() == pytest.approx(10 / 11)
    assert scores["acc"].item() == pytest.approx(13 / 16)


class Probability(nn.Module):
    """Two-class logits whose foreground probability is the image's first channel."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p = x[:, :1].clamp(1e-4, 1 - 1e-4)
        return {"out": torch.cat([torch.zeros_like(p), torch.logit(p)], 1) + self.dummy}


def _loader(images, masks):
    batch = {"image": list(images), "mask": list(masks), "id": [f"im{i}" for i in range(len(images))],
             "path": [""] * len(images), "size": [tuple(m.shape) for m in masks]}  # fmt: skip

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i):
            return batch

    return torch.utils.data.DataLoader(Data(), batch_size=None)


def _auc(probs: np.ndarray, truth: np.ndarray) -> float:
    """The ROC area as the Mann-Whitney statistic: the chance that a positive scores above a
    negative (ties count half), by direct comparison."""
    pos, neg = probs[truth], probs[~truth]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def test_scores_over_the_scored_pixels_at_the_chosen_threshold(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    masks = [(torch.rand(12, 16, generator=g) > 0.75).long() for _ in range(3)]
    images = []
    for m in masks:  # noisy probabilities that lean towards the truth
        p = (0.35 * m + 0.65 * torch.rand(12, 16, generator=g)).clamp(0, 1)
        images.append(torch.stack([p, p, p]))
    # outside the region of interest: labelled ignore and predicted confidently wrong
    for image, m in zip(images, masks):
        m[:, :3] = IGNORE_INDEX
        image[:, :, :3] = 0.99
    task = BinarySegmentationTask(model=Probability())
    trainer = quiet_trainer(tmp_path)
    (val,) = trainer.validate(task, _loader(images, masks), verbose=False)
    scored = torch.cat([m[m != IGNORE_INDEX] for m in masks]).numpy().astype(bool)
    probs = torch.cat([im[0][m != IGNORE_INDEX] for im, m in zip(images, masks)]).double().numpy()
    # the threshold: the grid's best F1, by hand
    best = max(
        (k / 100 for k in range(1, 100)),
        key=lambda t: 2 * ((probs >= t) & scored).sum() / ((probs >= t).sum() + scored.sum()),
    )
    assert task.threshold == pytest.approx(best) and val["val/threshold"] == pytest.approx(best)
    pred = probs >= best
    tp, fp = (pred & scored).sum(), (pred & ~scored).sum()
    tn, fn = (~pred & ~scored).sum(), (~pred & scored).sum()
    assert val["val/F1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert val["val/sensitivity"] == pytest.approx(tp / (tp + fn), abs=1e-6)
    assert val["val/specificity"] == pytest.approx(tn / (tn + fp), abs=1e-6)
    assert val["val/acc"] == pytest.approx((tp + tn) / len(probs), abs=1e-6)
    assert val["val/AUC"] == pytest.approx(_auc(probs, scored), abs=1e-5)

    # test: the validation's threshold, and each image's scores in per_image.csv
    (test,) = trainer.test(task, _loader(images, masks), verbose=False)
    assert test["test/F1"] == pytest.approx(val["val/F1"], abs=1e-6)
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["im0", "im1", "im2"]
    m0 = masks[0] != IGNORE_INDEX
    assert float(rows[0]["AUC"]) == pytest.approx(
        _auc(images[0][0][m0].double().numpy(), masks[0][m0].numpy().astype(bool)), abs=1e-4
    )
    assert int(rows[0]["pixels"]) == int(m0.sum())


def test_the_threshold_travels_in_the_checkpoint_and_decides_predictions_and_export(
    tmp_path,
) -> None:
    task = BinarySegmentationTask(model=Probability())
    task.decision_threshold.fill_(0.3)
    path = tmp_path / "t.ckpt"
    torch.save({"state_dict": task.state_dict()}, path)
    again = BinarySegmentationTask(model=Probability())
    again.load_state_dict(torch.load(path)["state_dict"])
    assert again.threshold == pytest.approx(0.3)
    image = torch.tensor([[0.2, 0.29], [0.31, 0.9]]).expand(3, 2, 2).clone()
    batch = {"image": [image], "id": ["a"], "path": [""], "size": [(2, 2)]}
    (result,) = again.predict_step(batch, 0)
    assert result["labels"].tolist() == [[0, 0], [1, 1]]
    exported = again.export_spec(2)["module"]
    assert exported(image[None]).argmax(1)[0].tolist() == [[0, 0], [1, 1]]
    again.threshold = 0.5  # --model.threshold: an evaluation option
    (result,) = again.predict_step(batch, 0)
    assert result["labels"].tolist() == [[0, 0], [0, 1]]


def test_a_model_of_other_than_two_classes_is_refused() -> None:
    model = Probability()
    model.num_classes = 3
    with pytest.raises(ConfigError, match="num_classes must be 2"):
        BinarySegmentationTask(model=model)
