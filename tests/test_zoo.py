"""The weights registry (:mod:`vtk.zoo`): an entry written from a checkpoint is usable by name
wherever a checkpoint is (vtk.load, vtk test/predict --ckpt_path, vtk export, a model's
weights), a file whose SHA-256 differs from its card is refused in one line, and the entries
shipped in the repository are whole and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import QUIET, ROOT
from PIL import Image

import vtk
from vtk import zoo
from vtk.errors import WeightsError
from vtk.models.fuse import tensors_of


@pytest.fixture
def entry(fit_demo, tmp_path, monkeypatch, run_vtk) -> tuple[str, Path]:
    """A demo segmentation checkpoint exported as the entry ``demo_seg`` of a registry folder
    of the test's own (``VTK_WEIGHTS_DIR``); returns the name and the checkpoint."""
    ckpt = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=2)
    folder = tmp_path / "registry"
    info = tmp_path / "info.yaml"
    info.write_text(
        "description: the demo segmenter, two steps\narchitecture: DeepLabV3+ ResNet-18\n"
        "metrics: {split: demo val, values: {mIoU: 1.5}}\nrecipe: demo_segmentation\n"
    )
    code = run_vtk("export", ckpt, "--format", "weights", "--name", "demo_seg", "--out", folder,
                   "--info", info)  # fmt: skip
    assert code == 0, code
    monkeypatch.setenv("VTK_WEIGHTS_DIR", str(folder))
    return "demo_seg", ckpt


def test_an_entry_has_its_card_and_checksum_and_is_listed(entry, run_vtk, capsys) -> None:
    name, ckpt = entry
    found = zoo.get(name)
    card = yaml.safe_load(found.card.read_text())
    assert card["sha256"] == zoo.file_sha256(found.file)
    assert card["task"] == "vtk.tasks.SegmentationTask"
    assert card["class_names"] == ["background", "circle", "square", "triangle"]
    assert card["input_spec"]["mean"] == [0.485, 0.456, 0.406]
    assert card["hyper_parameters"]["model"]["class_path"] == "vtk.models.Segmenter"
    assert "class_names" not in card["hyper_parameters"]  # owned by the card, said once
    assert found.file.stat().st_size < 0.6 * ckpt.stat().st_size  # float16, no optimiser state
    capsys.readouterr()
    assert run_vtk("list", "weights") == 0
    out = capsys.readouterr().out
    assert "demo_seg: SegmentationTask, DeepLabV3+ ResNet-18" in out
    assert "demo val: mIoU 1.5" in out and card["sha256"] in out


def test_load_by_name_predicts_as_the_checkpoint_does(entry) -> None:
    name, ckpt = entry
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    by_name, by_file = vtk.load(name, fast=False), vtk.load(ckpt, fast=False)
    assert by_name.task.class_names == by_file.task.class_names
    with torch.inference_mode():
        x = torch.randn(1, 3, 64, 64)
        (a, *_), (b, *_) = tensors_of(by_name.task.model(x)), tensors_of(by_file.task.model(x))
    assert torch.allclose(a, b, atol=2e-2 * float(b.abs().max()))  # float16 tensors
    agree = by_name.predict(image)["labels"] == by_file.predict(image)["labels"]
    assert agree.mean() > 0.99


def test_test_and_predict_take_a_name_for_a_checkpoint(entry, run_vtk, tmp_path) -> None:
    name, _ = entry
    assert run_vtk("test", "demo_segmentation", "--ckpt_path", name, "--data.crop_size", "64",
                   "--trainer.limit_test_batches", "1", *QUIET) == 0  # fmt: skip
    tested = sorted((tmp_path / "runs" / "demo_segmentation").glob("version_*/metrics.csv"))
    assert tested and "test/mIoU" in tested[-1].read_text()
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(images / "a.png")
    assert run_vtk("predict", name, images, "--output_dir", tmp_path / "out", *QUIET[:4]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_backbone_or_a_whole_model_starts_from_an_entry(entry) -> None:
    from vtk.models.backbones import ResNet

    name, _ = entry
    state, source = zoo.read_tensors(name)
    backbone = ResNet("resnet18", output_stride=16, weights=name)
    assert source == f"vtk weights {name}"
    assert torch.equal(backbone.conv1.weight, state["model.backbone.conv1.weight"])
    recipe = vtk.recipe.Recipe.load(
        "demo_segmentation", ["--model.init_args.model.init_args.weights", name]
    )
    network = recipe.network(num_classes=4)
    assert torch.equal(
        network.classifier.classifier.weight, state["model.classifier.classifier.weight"]
    )


def test_a_tampered_file_is_refused_in_one_line(entry, run_vtk, capsys) -> None:
    name, _ = entry
    file = zoo.get(name).file
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one tensor
    file.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"SHA-256 .* its card says .*changed or damaged"):
        vtk.load(name)
    message = run_vtk("test", "demo_segmentation", "--ckpt_path", name)
    assert isinstance(message, str) and message.startswith("vtk: error: weights demo_seg: ")
    assert "\n" not in message
    assert run_vtk("export", name, "--out", "m.onnx").startswith("vtk: error: weights demo_seg")


def test_an_unknown_name_lists_the_entries(entry, run_vtk) -> None:
    message = run_vtk("export", "demo_sge", "--out", "m.onnx")
    assert message.startswith("vtk: error: no weights named 'demo_sge'. Did you mean demo_seg?")
    with pytest.raises(WeightsError, match="no weights named 'nope'"):
        vtk.load("nope")


# -- the weights shipped in the repository ---------------------------------------------------
SHIPPED = sorted(p.stem for p in (ROOT / "weights").glob("*.yaml"))


def test_shipped_entries_are_whole_and_within_the_size_budget() -> None:
    cards = zoo.entries()
    assert set(SHIPPED) <= set(cards)
    total = 0
    recipes = {p.stem for p in (ROOT / "recipes").glob("*.yaml")}
    for name in SHIPPED:
        entry = cards[name]
        zoo.verify(entry)  # the file is there and its SHA-256 is the card's
        size = entry.file.stat().st_size
        assert size <= 30e6, f"{name}: {size / 1e6:.1f} MB"
        total += size
        meta = entry.meta
        for key in ("description", "architecture", "metrics", "recipe", "trained_with", "rescore"):
            assert meta.get(key), f"{name} has no {key}"
        assert meta["recipe"] in recipes
        assert name not in recipes  # a name means one thing on the command line
        assert f"--ckpt_path {name}" in meta["rescore"] or f" {name} " in meta["rescore"]
    assert total <= 80e6


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_predict(name) -> None:
    predictor = vtk.load(name, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    result = predictor.predict(image)
    assert result  # each task's own answer (tested with the tasks)
    assert predictor.class_names == zoo.get(name).meta["class_names"]


PATH_KEYS = ("root", "_images", "_annotations", "_dir")


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_entrys_rescore_command_parses_as_written(name, run_vtk, capsys) -> None:
    """The command each card (and the results pages) gives to re-score the weights: its recipe,
    overrides and the entry's name resolve (``--print_config`` stops before the data is read)."""
    import shlex

    args = shlex.split(zoo.get(name).meta["rescore"])
    assert args[:2] == ["vtk", "test"]
    assert run_vtk(*args[1:], "--print_config") == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert Path(printed["ckpt_path"]).name.startswith(f"{name}-")  # the entry, verified
    given = printed["data"]["init_args"]  # the data the command names: the reader's own
    paths = [v for k, v in given.items() if isinstance(v, str) and k.endswith(PATH_KEYS)]
    assert paths and all(p.startswith("path/to/") for p in paths), paths


def _documented_rescores() -> list[str]:
    """Every ``vtk test ... --ckpt_path <shipped name>`` command of the README and the docs,
    continuation lines joined."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for page in pages:
        text = page.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = re.sub(r"\s+", " ", line.strip())
            if line.startswith("vtk test ") and any(f"--ckpt_path {n}" in line for n in SHIPPED):
                found.append(line)
    return found


def test_every_documented_rescore_of_shipped_weights_parses(run_vtk, capsys) -> None:
    """The results pages' commands on shipped weights (re-scoring, sliced variants) as written:
    the recipe, every override and the entry resolve (``--print_config`` stops before data)."""
    import shlex

    commands = _documented_rescores()
    assert len(commands) >= 8  # README, results.md, the reports
    for command in commands:
        args = shlex.split(command)
        assert run_vtk(*args[1:], "--print_config") == 0, command
        capsys.readouterr()
