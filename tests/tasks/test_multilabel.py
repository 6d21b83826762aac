"""vtk.tasks.MultiLabelClassificationTask: the losses, the threshold chosen on validation and
kept in the checkpoint, the metrics by hand, and predictions above the threshold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import quiet_trainer
from torch import nn

from vtk.tasks import MultiLabelClassificationTask
from vtk.tasks.multilabel import asymmetric_loss


def test_asymmetric_loss_reduces_to_bce() -> None:
    logits, targets = torch.randn(4, 5), (torch.rand(4, 5) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1).mean()
    assert asymmetric_loss(logits, targets, 0.0, 0.0, 0.0).item() == pytest.approx(
        bce.item(), rel=1e-5
    )
    assert asymmetric_loss(logits, targets).item() < bce.item()  # easy negatives down-weighted


class Scored(nn.Module):
    """Logits whose sigmoid is 0.7 on each image's true classes and 0.12 elsewhere."""

    num_classes = 3

    def __init__(self, truth: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.truth = truth
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = x[:, 0, 0, 0].round().long().tolist()
        p = torch.stack([self.truth[k] * 0.58 + 0.12 for k in keys])
        return torch.logit(p) + self.dummy


def test_threshold_metrics_and_predictions(tmp_path) -> None:
    truth = {
        k: torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]][k], dtype=torch.float)
        for k in range(4)
    }
    images = torch.zeros(4, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(4).float()
    batch = {"image": images, "label": torch.stack([truth[k] for k in range(4)])}

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i):
            return batch

    loader = torch.utils.data.DataLoader(Data(), batch_size=None)
    task = MultiLabelClassificationTask(Scored(truth), class_names=["a", "b", "c"])
    (result,) = quiet_trainer(tmp_path).validate(task, loader, verbose=False)
    # scores separate the classes perfectly: AP 1 per class, F1 1 from the first threshold above 0.12
    assert result["val/mAP"] == 1.0 and result["val/F1"] == 1.0
    assert result["val/threshold"] == pytest.approx(
        0.15
    ) and task.decision_threshold.item() == pytest.approx(0.15)
    assert "decision_threshold" in task.state_dict()  # kept in the checkpoint
    out = task.predict_step({"image": list(images), "id": list("wxyz"), "path": [""] * 4}, 0)
    assert [o["names"] for o in out] == [["a", "c"], ["b"], ["a", "b"], ["c"]]
    task.threshold = 0.9  # an evaluation option: nothing reaches it
    assert all(
        not o["labels"]
        for o in task.predict_step({"image": list(images), "id": list("wxyz"), "path": [""] * 4}, 0)
    )
