"""vtk.checkpoint: files given as checkpoints (or ONNX models) that are not what they claim are
answered in one line naming the file and what it is, at every entry point, and nothing in them
is ever executed."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

import vtk
from vtk.checkpoint import read_checkpoint
from vtk.errors import CheckpointError


class WritesAFile:
    """A pickle with code in it: unpickling it would create ``PWNED`` in the current folder."""

    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('ran')",))


def _bad_files(folder, good):
    folder.mkdir()
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 40,
        "empty": b"",
        "foreign_pickle": pickle.dumps({"model": __import__("datetime").date(2020, 1, 1)}),
        "code_pickle": pickle.dumps(WritesAFile()),
    }
    for name, content in files.items():
        (folder / f"{name}.ckpt").write_bytes(content)
    torch.save({"state_dict": {}, "evil": WritesAFile()}, folder / "code_in_zip.ckpt")
    torch.save({"conv.weight": torch.zeros(1)}, folder / "state_dict.ckpt")
    expected = {
        "truncated": "is truncated",
        "random": "is not a PyTorch checkpoint",
        "empty": "is empty",
        "foreign_pickle": "holds Python objects a checkpoint does not (datetime.date)",
        "code_pickle": "holds Python objects a checkpoint does not (builtins.exec)",
        "code_in_zip": "holds Python objects a checkpoint does not",
        "state_dict": "is a bare state_dict, not a Lightning checkpoint",
    }
    return {folder / f"{name}.ckpt": text for name, text in expected.items()}


def test_every_entry_point_names_a_bad_checkpoint_and_runs_nothing(
    fit_demo, run_vtk, tmp_path, monkeypatch
) -> None:
    good = fit_demo("demo_classification", "--data.image_size", "32", steps=1)
    monkeypatch.chdir(tmp_path)
    bad = _bad_files(tmp_path / "bad", good)
    for path, text in bad.items():
        with pytest.raises(CheckpointError, match=re.escape(text)):
            read_checkpoint(path)
        with pytest.raises(CheckpointError, match=re.escape(text)):
            vtk.load(path, device="cpu")
    images = tmp_path / "images"
    images.mkdir()
    for path, text in list(bad.items())[:5] + [(p, t) for p, t in bad.items() if "code" in p.name]:
        for args in (
            ("test", "demo_classification", "--ckpt_path", path),
            ("validate", "demo_classification", "--ckpt_path", path),
            ("predict", path, images),
            ("predict", "demo_classification", "--ckpt_path", path, "--data.predict_dir", images),
            ("fit", "demo_classification", "--ckpt_path", path),
            ("export", path, "--out", tmp_path / "m.onnx"),
            ("serve", path),
        ):
            message = run_vtk(*args)
            assert isinstance(message, str), args
            assert message.startswith("vtk: error:") and str(path) in message, (args, message)
            assert text.split(" (")[0] in message and "\n" not in message, (args, message)
            assert "weights_only=False" not in message
    assert not (tmp_path / "PWNED").exists()


def test_another_tasks_checkpoint_is_refused_by_name(fit_demo, run_vtk, tmp_path) -> None:
    segmentation = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=1)
    expected = (
        f"vtk: error: {segmentation} was saved by a SegmentationTask; this recipe builds a "
        "ClassificationTask"
    )
    for sub in ("test", "predict"):  # predict neither ignores the recipe nor writes elsewhere
        message = run_vtk(sub, "demo_classification", "--ckpt_path", segmentation,
                          "--data.predict_dir", tmp_path)  # fmt: skip
        assert isinstance(message, str) and message.startswith(expected), (sub, message)
    assert not (segmentation.parent.parent / "predictions").exists()


def test_a_file_that_is_not_an_onnx_model_is_named(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(CheckpointError, match=f"{path} is not an ONNX model onnxruntime can load"):
        vtk.load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        vtk.load(tmp_path / "missing.onnx")


def test_a_checkpoint_that_cannot_be_written_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    """A full disk while saving: the partial file is removed, the earlier checkpoint stays
    whole, and the error says how much the checkpoint needs."""
    import errno

    import torch
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from vtk.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, target)
    before = target.read_bytes()

    def full(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full)
    with pytest.raises(CheckpointError, match=r"No space left on device\): it needs about 4 MB"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1_000_000)}}, target)
    assert not (tmp_path / "last.ckpt.partial").exists()
    assert target.read_bytes() == before


def test_a_run_folder_that_cannot_be_written_is_refused_before_training(
    run_vtk, tmp_path, monkeypatch
) -> None:
    (tmp_path / "runs").write_text("a file where the run folder goes")
    message = run_vtk("fit", "demo_classification", "--data.image_size", "32",
                      "--trainer.max_steps", "1")  # fmt: skip
    assert isinstance(message, str) and message.startswith("vtk: error: the run folder ")
    assert "is a file, not a folder" in message and "\n" not in message
    assert not list(tmp_path.rglob("*.ckpt"))


def test_check_writable_names_permission_and_space(tmp_path, monkeypatch) -> None:
    import os
    import shutil

    from vtk.checkpoint import check_writable

    check_writable(tmp_path / "runs" / "x")  # nothing created
    assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(os, "access", lambda *a: False)
    with pytest.raises(CheckpointError, match=r"cannot be written .*Permission denied"):
        check_writable(tmp_path / "runs")
    monkeypatch.undo()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10_000_000))
    with pytest.raises(CheckpointError, match="has 10 MB free; one checkpoint of this run needs"):
        check_writable(tmp_path, needed_bytes=50_000_000)
