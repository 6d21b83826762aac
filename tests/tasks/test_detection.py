"""DetectionTask: training, COCO mAP equal to pycocotools' own, results JSON, checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json

import pytest
import torch
from helpers import quiet_trainer
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from vtk.data import DemoDetectionDataModule
from vtk.errors import ConfigError
from vtk.models import FCOS, ResNet
from vtk.tasks import DetectionTask


@pytest.fixture(scope="module")
def demo() -> DemoDetectionDataModule:
    return DemoDetectionDataModule(batch_size=4, num_workers=0)


def test_fit_logs_losses_and_coco_metrics(demo, tmp_path) -> None:
    model = FCOS(
        ResNet("resnet18", out_indices=(1, 2, 3)), demo.num_classes, min_size=96, max_size=96
    )
    task = DetectionTask(model, class_names=demo.class_names, category_ids=demo.category_ids)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(task, datamodule=demo)
    for key in ("train/loss", "train/classification", "train/bbox_regression", "train/bbox_ctrness", "train/lr",
                "val/AP", "val/AP50", "val/AP75", "val/APs", "val/APm", "val/APl", "val/AR100"):  # fmt: skip
        assert key in trainer.callback_metrics, key


def _key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.numpy().tobytes()).hexdigest()


class Oracle(nn.Module):
    """Returns, for each image it is shown, the detections prepared for it (looked up by content)."""

    def __init__(self, num_classes: int, answers: dict[str, dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.num_classes, self.answers = num_classes, answers
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images, targets=None):
        return [self.answers[_key(im)] for im in images]


def _answers(demo, noisy: bool) -> dict[str, dict[str, torch.Tensor]]:
    demo.setup("validate")
    g = torch.Generator().manual_seed(0)
    answers = {}
    for i in range(len(demo.datasets["val"])):
        item = demo.datasets["val"][i]
        boxes, labels = item["eval_target"]["boxes"], item["eval_target"]["labels"]
        scores = torch.ones(len(boxes))
        if noisy:  # jitter, random scores, some wrong labels and false positives
            boxes = boxes + torch.randn(boxes.shape, generator=g) * 3
            scores = torch.rand(len(boxes), generator=g)
            labels = torch.where(
                torch.rand(len(labels), generator=g) < 0.2, (labels + 1) % 3, labels
            )
            extra = torch.rand(2, 4, generator=g) * 60
            boxes = torch.cat(
                [boxes, torch.cat([extra[:, :2], extra[:, :2] + extra[:, 2:] + 5], 1)]
            )
            scores, labels = (
                torch.cat([scores, torch.rand(2, generator=g)]),
                torch.cat([labels, torch.tensor([0, 1])]),
            )
        answers[_key(item["image"])] = {"boxes": boxes, "scores": scores, "labels": labels}
    return answers


def test_ground_truth_as_predictions_gives_ap_1(demo, tmp_path) -> None:
    task = DetectionTask(
        Oracle(demo.num_classes, _answers(demo, noisy=False)), category_ids=demo.category_ids
    )
    (result,) = quiet_trainer(tmp_path).validate(task, datamodule=demo, verbose=False)
    assert result["val/AP"] == pytest.approx(1.0) and result["val/AP50"] == pytest.approx(1.0)


def test_logged_ap_equals_cocoeval_on_the_written_json(demo, tmp_path) -> None:
    task = DetectionTask(
        Oracle(demo.num_classes, _answers(demo, noisy=True)), category_ids=demo.category_ids
    )
    task.output_dir = str(tmp_path)
    (result,) = quiet_trainer(tmp_path).test(task, datamodule=demo, verbose=False)
    results = json.loads((tmp_path / "coco_results.json").read_text())
    assert {r["category_id"] for r in results} <= set(demo.category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(demo.paths["test"][1])
        evaluation = COCOeval(gt, gt.loadRes(str(tmp_path / "coco_results.json")), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    assert 0.1 < stats[0] < 0.9  # a meaningful, not degenerate, score
    for key, index in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("AR100", 8)):
        assert result[f"test/{key}"] == pytest.approx(stats[index], abs=1e-6), key


def test_category_ids_other_than_the_datas_are_refused(demo, tmp_path) -> None:
    """The vtk command links them; in Python, forgetting them would write wrong ids silently."""
    task = DetectionTask(Oracle(demo.num_classes, {}))  # ids 0, 1, 2; the demo's are 1, 2, 3
    with pytest.raises(ConfigError, match=r"category_ids \[1, 2, 3\] differ .* \[0, 1, 2\]"):
        quiet_trainer(tmp_path).validate(task, datamodule=demo, verbose=False)


def test_a_checkpoint_for_other_classes_is_refused_by_name(demo, tmp_path) -> None:
    other = DetectionTask(
        FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 7, min_size=64, max_size=64)
    )
    path = tmp_path / "seven.ckpt"
    torch.save(
        {
            "state_dict": other.state_dict(),
            "hyper_parameters": {"model": {"init_args": {"num_classes": 7}}},
        },
        path,
    )
    task = DetectionTask(
        FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), demo.num_classes, min_size=64, max_size=64)
    )
    with pytest.raises(ConfigError, match=r"trained for num_classes=7, the data has 3.*cls_logits"):
        task.on_load_checkpoint(torch.load(path, weights_only=False))


def test_faster_coco_eval_gives_the_same_numbers(demo, tmp_path) -> None:
    pytest.importorskip("faster_coco_eval")
    answers = _answers(demo, noisy=True)
    results = [
        quiet_trainer(tmp_path).validate(
            DetectionTask(
                Oracle(demo.num_classes, answers),
                category_ids=demo.category_ids,
                map_backend=backend,
            ),
            datamodule=demo,
            verbose=False,
        )[0]
        for backend in ("pycocotools", "faster_coco_eval")
    ]
    assert 0.1 < results[0]["val/AP"] < 0.9
    assert results[0] == pytest.approx(results[1], abs=1e-6)


def test_faster_coco_eval_missing_is_a_clear_error(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "faster_coco_eval" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install faster-coco-eval"):
        DetectionTask(Oracle(3, {}), map_backend="faster_coco_eval")
