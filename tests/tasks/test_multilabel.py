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
    assert asymmetric_loss(logits, targets, 0.0, 0.0, 0.0, reduction="mean").item() == (
        pytest.approx(bce.item(), rel=1e-5)
    )
    assert asymmetric_loss(logits, targets, reduction="mean").item() < bce.item()  # easy negatives


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


class AuthorsASL(torch.nn.Module):
    """A transcription of the authors' released loss (Alibaba-MIIL/ASL,
    src/loss_functions/losses.py, class AsymmetricLoss), as their train.py builds it:
    AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05, disable_torch_grad_focal_loss=True)."""

    def __init__(self, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8,
                 disable_torch_grad_focal_loss=False):  # fmt: skip
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss

    def forward(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)
            pt = pt0 + pt1
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss *= one_sided_w
        return -loss.sum()


@pytest.mark.parametrize("focusing_grad", [False, True])
def test_asymmetric_loss_is_the_authors_value_and_gradient(focusing_grad) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 20, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(6, 20, generator=g) > 0.8).double()
    ours_x, theirs_x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = asymmetric_loss(ours_x, targets, 4.0, 0.0, 0.05, focusing_grad=focusing_grad)
    theirs = AuthorsASL(4, 0, 0.05, disable_torch_grad_focal_loss=not focusing_grad)(
        theirs_x, targets
    )
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)  # summed over the batch too
    assert torch.allclose(ours_x.grad.double(), theirs_x.grad, rtol=1e-5, atol=1e-7)
