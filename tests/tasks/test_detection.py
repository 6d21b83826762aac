"""DetectionTask: training, COCO mAP equal to pycocotools' own, results JSON, checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json

import numpy as np
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
        Oracle(demo.num_classes, _answers(demo, noisy=True)), class_names=demo.class_names,
        category_ids=demo.category_ids,
    )  # fmt: skip
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
    # per class: AP and AP50 as COCOeval's precision array gives them for each category, and
    # the PR curves written are that array's IoU-0.5 rows
    precision = evaluation.eval["precision"]  # (T, R, K, A, M), K in sorted category-id order
    curves = np.loadtxt(tmp_path / "pr_curves.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(curves[:, 0], np.linspace(0, 1, 101), atol=1e-9)
    for k, (cat, name) in enumerate(zip(demo.category_ids, demo.class_names)):
        assert evaluation.params.catIds[k] == cat
        ap, ap50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        assert result[f"test/AP/{name}"] == pytest.approx(ap[ap > -1].mean(), abs=1e-6), name
        assert result[f"test/AP50/{name}"] == pytest.approx(ap50[ap50 > -1].mean(), abs=1e-6)
        np.testing.assert_allclose(curves[:, 1 + k], ap50, atol=1e-6)
    assert (tmp_path / "confusion_matrix.csv").is_file()


def test_per_class_ap_is_logged_at_every_validation(demo, tmp_path) -> None:
    task = DetectionTask(
        Oracle(demo.num_classes, _answers(demo, noisy=True)), class_names=demo.class_names,
        category_ids=demo.category_ids,
    )  # fmt: skip
    (result,) = quiet_trainer(tmp_path).validate(task, datamodule=demo, verbose=False)
    for name in demo.class_names:
        assert 0 < result[f"val/AP/{name}"] < result[f"val/AP50/{name}"] <= 1, name
    # the mean over classes is the AP COCOeval reports (every class has objects here)
    mean = np.mean([result[f"val/AP/{n}"] for n in demo.class_names])
    assert result["val/AP"] == pytest.approx(mean, abs=1e-6)


def test_confusion_matrix_counted_by_hand(tmp_path) -> None:
    """Two classes (0 cat, 1 dog) + background; score threshold 0.25, IoU 0.5."""
    from vtk.metrics import DetectionConfusionMatrix

    def t(*rows):
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)

    targets = [
        {"boxes": t([0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 60, 60]),
         "labels": torch.tensor([0, 1, 1]), "iscrowd": torch.tensor([0, 0, 1])},
        {"boxes": t([0, 0, 10, 10]), "labels": torch.tensor([1]), "iscrowd": torch.tensor([0])},
    ]  # fmt: skip
    detections = [
        {"boxes": t([0, 0, 10, 11],  # the cat, as a cat
                    [0, 0, 10, 9],  # the cat again: the object is taken -> a false positive cat
                    [20, 20, 30, 31],  # the dog, as a cat
                    [70, 0, 80, 10],  # nothing there -> a false positive dog
                    [45, 45, 55, 55],  # on the crowd region -> counts nowhere
                    [20, 20, 30, 30]),  # the dog again, but below the score threshold
         "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.1]),
         "labels": torch.tensor([0, 0, 0, 1, 1, 1])},
        {"boxes": t(), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)},
    ]  # fmt: skip
    metric = DetectionConfusionMatrix(2, score_thresh=0.25, iou_thresh=0.5)
    metric.update(detections, targets)
    #                 pred: cat dog bg     (rows: true cat, dog, background)
    expected = torch.tensor([[1, 0, 0],
                             [1, 0, 1],  # a dog seen as a cat; the second image's dog missed
                             [1, 1, 0]])  # fmt: skip
    assert torch.equal(metric.compute(), expected)


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


class Quarter(nn.Module):
    """A 'detector' that finds one box over the middle half of every image it is shown, and
    says (the detector interface's resize_range) it resizes as an FCOS with min_size 200 /
    max_size 333 would."""

    num_classes = 1

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, int]] = []

    def resize_range(self, training: bool = False) -> tuple[int, int]:
        return 200, 333

    def forward(self, images, targets=None):
        out = []
        for im in images:
            h, w = im.shape[1:]
            self.seen.append((h, w))
            out.append({"boxes": torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]]),
                        "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)})  # fmt: skip
        return out


def test_jpeg_draft_images_are_scored_in_the_files_pixels(tmp_path) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (1600, 1200), (90, 90, 90)).save(tmp_path / "images" / "big.jpg")
    coco = {"images": [{"id": 1, "file_name": "big.jpg", "width": 1600, "height": 1200}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [400, 300, 800, 600],
                             "area": 480000, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    from vtk.data import CocoDetectionDataModule

    a, im = str(tmp_path / "ann.json"), str(tmp_path / "images")
    dm = CocoDetectionDataModule(
        im, a, a, test_annotations=a, jpeg_draft=True, num_workers=0, batch_size=1
    )
    model = Quarter()
    task = DetectionTask(model, class_names=dm.class_names, category_ids=dm.category_ids)
    (result,) = quiet_trainer(tmp_path).validate(task, datamodule=dm, verbose=False)
    assert model.seen == [(300, 400)]  # decoded at a quarter: 400x300 >= the 267x200 resize
    assert result["val/AP"] == pytest.approx(1.0)  # its box, scaled back x4, is the object's
    task.output_dir = str(tmp_path / "test")  # one class: the test files too
    (result,) = quiet_trainer(tmp_path).test(task, datamodule=dm, verbose=False)
    assert result["test/AP/thing"] == pytest.approx(1.0)
    assert (tmp_path / "test" / "confusion_matrix.csv").read_text().splitlines()[1:] == [
        "thing,1,0", "background,0,0"
    ]  # fmt: skip
    results = json.loads((tmp_path / "test" / "coco_results.json").read_text())
    assert results[0]["bbox"] == pytest.approx([400, 300, 800, 600])
    dm.setup("fit")
    dm.datasets["train"].decode_fit = (200, 333)
    item = dm.datasets["train"][0]
    assert tuple(item["image"].shape[1:]) == (300, 400) and item["scale"] == (4.0, 4.0)
    # the training box follows the image (a flip may mirror it: x1 is 100 or 200)
    box = item["target"]["boxes"][0].tolist()
    assert box[1::2] == [75.0, 225.0] and box[2] - box[0] == 200.0


def test_tensorboard_gets_the_figures_and_drawn_images_at_validation(demo, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = DetectionTask(
        Oracle(demo.num_classes, _answers(demo, noisy=True)), class_names=demo.class_names,
        category_ids=demo.category_ids,
    )  # fmt: skip
    logger = TensorBoardLogger(tmp_path, name="tb")
    quiet_trainer(tmp_path, logger=logger, limit_val_batches=2).validate(task, datamodule=demo)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    images = events.Tags()["images"]
    assert {"val/confusion_matrix", "val/pr_curves"} <= set(images), images
    drawn = [t for t in images if t.startswith("val/image_")]
    assert len(drawn) == DetectionTask.TENSORBOARD_IMAGES
    first = events.Images("val/image_0")[0]
    assert first.width == 2 * 128 and first.height == 128  # prediction | ground truth
    assert "val/AP/circle" in events.Tags()["scalars"]


def test_sliced_evaluation_and_prediction(demo, tmp_path) -> None:
    """slice_size runs each tile (and the whole image) through the detector in vtk test and
    predictions."""
    seen: list[tuple[int, int]] = []
    model = FCOS(
        ResNet("resnet18", out_indices=(1, 2, 3)), demo.num_classes, min_size=64, max_size=64
    )
    model.register_forward_pre_hook(
        lambda m, args: seen.extend(tuple(i.shape[-2:]) for i in args[0])
    )
    task = DetectionTask(model, class_names=demo.class_names, category_ids=demo.category_ids,
                         slice_size=64, slice_overlap=0.0)  # fmt: skip
    (result,) = quiet_trainer(tmp_path, limit_test_batches=1).test(
        task, datamodule=demo, verbose=False
    )
    assert "test/AP" in result
    # 4 images of 128 px: four 64 px tiles and the whole image each
    assert seen.count((64, 64)) == 16 and seen.count((128, 128)) == 4
    with pytest.raises(ConfigError, match="slice_size is a tile side in pixels"):
        DetectionTask(model, slice_size=4)
