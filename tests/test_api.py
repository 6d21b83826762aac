"""`vtk.load(checkpoint).predict(image)`: a checkpoint written by `vtk fit`, used from Python,
preparing images as its run's validation did (the input spec travels in the checkpoint)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vtk
from vtk.data.transforms import eval_transform
from vtk.errors import CheckpointError, ConfigError
from vtk.spec import CIFAR10_MEAN, CIFAR10_STD, InputSpec


def test_classification_checkpoint_predicts_from_a_path_an_array_and_a_pil_image(
    fit_demo, tmp_path
) -> None:
    ckpt = fit_demo("demo_classification", "--data.image_size", "32", steps=1)
    model = vtk.load(ckpt)
    image = Image.new("RGB", (50, 40), (200, 30, 30))
    image.save(tmp_path / "x.png")
    results = [
        model.predict(tmp_path / "x.png"),
        model.predict(image),
        model.predict(np.asarray(image)),
    ]
    assert results[0] == results[1] == results[2]
    assert len(results[0]["names"]) == 4 and set(results[0]["names"]) == {
        "circle", "square", "star", "triangle"
    }  # fmt: skip
    assert sum(results[0]["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_segmentation_checkpoint_predicts_a_map_at_the_image_size(fit_demo) -> None:
    ckpt = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=1)
    labels = vtk.load(ckpt).predict(np.zeros((70, 90, 3), np.uint8))["labels"]
    assert labels.shape == (70, 90) and labels.max() < 4
    # evaluation settings other than the checkpoint's: sliding windows and flip TTA
    model = vtk.load(ckpt, eval_mode="slide", window=48, stride=32, tta_flip=True)
    assert (model.task.eval_mode, model.task.window, model.task.tta_flip) == ("slide", 48, True)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    mirrored = model.predict(image[:, ::-1].copy())["labels"]
    assert np.array_equal(model.predict(image)["labels"], mirrored[:, ::-1])  # flip-averaged
    with pytest.raises(ConfigError, match="SegmentationTask has no evaluation option score_thresh"):
        vtk.load(ckpt, score_thresh=0.5)


def _write_cifar10(root: Path, per_batch: int = 4) -> Path:
    """The python-pickle release of CIFAR-10 (cifar-10-batches-py), ``per_batch`` images each."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (root / name).write_bytes(pickle.dumps(batch))
    return root


def test_a_cifar10_checkpoint_predicts_with_its_own_normalisation_and_size(
    fit_demo, tmp_path
) -> None:
    root = _write_cifar10(tmp_path / "cifar-10-batches-py")
    ckpt = fit_demo("resnet56_cifar10", "--data.root", root, "--data.batch_size", "4", steps=1)
    predictor = vtk.load(ckpt)
    spec = predictor.task.input_spec
    assert (spec.mean, spec.std, spec.resize, spec.crop) == (CIFAR10_MEAN, CIFAR10_STD, 32, 32)

    # a photo of another size: resized to 32 (shorter side), centre-cropped, CIFAR statistics
    photo = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    x = eval_transform(InputSpec(CIFAR10_MEAN, CIFAR10_STD, resize=32, crop=32))(image=photo)[
        "image"
    ]
    assert x.shape == (3, 32, 32)
    with torch.no_grad():
        probs = torch.softmax(predictor.task.model(x[None]), dim=1)[0]
    result = predictor.predict(photo)
    assert result["labels"][0] == int(probs.argmax())
    assert result["scores"][0] == pytest.approx(float(probs.max()), abs=1e-6)
    # ImageNet's statistics and a 224 crop, as a guess would give, are another input entirely
    guessed = eval_transform(InputSpec(resize=256, crop=224))(image=photo)["image"]
    assert guessed.shape == (3, 224, 224)
    with torch.no_grad():
        logits = predictor.task.model(torch.stack([x, guessed[:, :32, :32]]))
    assert not torch.allclose(logits[0], logits[1], rtol=1e-3)


def test_a_subclass_of_a_task_just_works(fit_demo, tmp_path) -> None:
    """A user's own task: vtk.load and predict go through its own predict_step."""
    module = tmp_path / "my_tasks.py"
    module.write_text(
        "from vtk.tasks import ClassificationTask\n\n\n"
        "class MyTask(ClassificationTask):\n"
        "    def predict_step(self, batch, batch_idx):\n"
        "        return [{**r, 'mine': True} for r in super().predict_step(batch, batch_idx)]\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        ckpt = fit_demo(
            "demo_classification", "--model", "my_tasks.MyTask", "--data.image_size", "32", steps=1
        )
        result = vtk.load(ckpt).predict(np.zeros((40, 40, 3), np.uint8))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_tasks", None)
    assert result["mine"] is True and len(result["names"]) == 4


def test_a_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        vtk.load(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="was not saved by `vtk fit`"):
        vtk.load(tmp_path / "plain.ckpt")


def _images(folder: Path, source: Path, pattern: str, n: int) -> Path:
    folder.mkdir()
    for p in sorted(source.rglob(pattern))[:n]:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def test_fast_batched_and_folder_predictions_agree_with_the_plain_network_and_vtk_predict(
    fit_demo, run_vtk, tmp_path, vtk_log
) -> None:
    import csv
    import os

    ckpt = fit_demo("demo_classification", "--data.image_size", "32", steps=2)
    demo = Path(os.environ["VTK_DATA_DIR"]) / "demo_classification" / "val"
    folder = _images(tmp_path / "images", demo, "*.png", 6)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    fast, plain = vtk.load(ckpt, device="cpu"), vtk.load(ckpt, device="cpu", fast=False)
    assert fast.fold_report["pairs"] == 20  # ResNet-18: every conv has its BatchNorm
    paths = sorted(p for p in folder.glob("*.png"))
    batched = fast.predict(paths)
    one_by_one = [fast.predict(p) for p in paths]
    unfolded = plain.predict(paths)
    for a, b, c in zip(batched, one_by_one, unfolded):
        assert a["names"] == b["names"] == c["names"]
        np.testing.assert_allclose(a["scores"], c["scores"], atol=1e-5)
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    streamed = list(fast.predict_folder(folder, batch_size=4, num_workers=0, progress=False))
    assert [r["id"] for r in streamed] == [p.stem for p in paths]  # broken.jpg and notes.txt out
    assert "notes.txt" in vtk_log.text and "broken.jpg" in vtk_log.text
    assert [r["names"] for r in streamed] == [r["names"] for r in batched]
    # vtk predict (the fast path too, through Lightning) names the same classes
    assert run_vtk("predict", ckpt, folder, "--output_dir", tmp_path / "out") == 0
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = {r["id"]: r["class1"] for r in csv.DictReader(f)}
    assert rows == {r["id"]: r["names"][0] for r in streamed}
    assert "fast path: 20 BatchNorms folded" in vtk_log.text


def test_detector_fast_path_gives_the_same_detections(fit_demo, tmp_path) -> None:
    import os

    small = ("--model.init_args.model.init_args.min_size", "96",
             "--model.init_args.model.init_args.max_size", "96")  # fmt: skip
    ckpt = fit_demo("demo_detection", *small, steps=2)
    demo = Path(os.environ["VTK_DATA_DIR"]) / "demo_detection" / "val"
    paths = sorted(demo.glob("*.jpg"))[:3]
    fast, plain = vtk.load(ckpt, device="cpu"), vtk.load(ckpt, device="cpu", fast=False)
    assert fast.fold_report["pairs"] > 0
    for a, b in zip(fast.predict(paths), plain.predict(paths)):
        assert a["labels"][:10] == b["labels"][:10]
        np.testing.assert_allclose(a["scores"][:10], b["scores"][:10], atol=1e-4)
        np.testing.assert_allclose(a["boxes"][:10], b["boxes"][:10], atol=1e-2)


def test_compiled_fast_path_gives_the_same_predictions(fit_demo, tmp_path) -> None:
    """``compile=True``: torch.compile with Inductor's freezing, on top of the folded network."""
    ckpt = fit_demo("demo_classification", "--data.image_size", "32", steps=1)
    images = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)
              for i in range(3)]  # fmt: skip
    compiled = vtk.load(ckpt, device="cpu", compile=True).predict(images)
    plain = vtk.load(ckpt, device="cpu", fast=False).predict(images)
    for a, b in zip(compiled, plain):
        assert a["names"][0] == b["names"][0]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
