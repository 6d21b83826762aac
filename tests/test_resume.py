"""Resume through the `vtk` command: a killed run continues from its last checkpoint; what
`--ckpt_path last` / `auto` do without one; another recipe's checkpoint is refused by name."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import VTK

from vtk.recipe import default_run_config, recipes_dir

RECIPE = recipes_dir() / "demo_classification.yaml"
TINY = ("--data.image_size", "32", "--data.batch_size", "8", "--data.num_workers", "0",
        "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1")  # fmt: skip


def _recipe(tmp_path: Path, every_n_train_steps: int) -> Path:
    """The demo recipe whose `last` checkpoint (vtk's default callbacks, written out) is
    written every few training steps."""
    config = yaml.safe_load(RECIPE.read_text())
    callbacks = default_run_config(RECIPE, config["model"]["class_path"])["trainer.callbacks"]
    for cb in callbacks:
        if cb["init_args"].get("filename") == "last":
            cb["init_args"]["every_n_train_steps"] = every_n_train_steps
    config["trainer"]["callbacks"] = callbacks
    path = tmp_path / "demo_classification.yaml"  # the run folder is named after it
    path.write_text(yaml.safe_dump(config))
    return path


def _step(path: Path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, vtk_process) -> None:
    recipe = _recipe(tmp_path, every_n_train_steps=3)
    args = (str(recipe), *TINY, "--trainer.limit_train_batches", "39")
    proc = subprocess.Popen(
        [VTK, "fit", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )  # fmt: skip
    last = tmp_path / "runs" / "demo_classification" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file() and _step(last) >= 6:  # a whole file at every moment: loads
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)  # mid-epoch, no chance to clean up
    proc.wait()
    killed_at = _step(last)
    assert 6 <= killed_at < 39

    resumed = vtk_process("fit", *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {Path('runs/demo_classification/version_0/checkpoints/last.ckpt')}" in (
        resumed.stderr
    )
    run = tmp_path / "runs" / "demo_classification" / "version_0"  # the same run folder
    assert not (run.parent / "version_1").exists()
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()]
    header = rows[0]
    steps = [int(r[header.index("step")]) for r in rows[1:] if r[header.index("train/lr")]]
    # one row per step: those logged before the checkpoint, then the resumed run's from it
    assert steps == list(range(39))
    assert _step(run / "checkpoints" / "last.ckpt") == 39


def test_a_resumed_run_keeps_the_best_of_the_whole_run(run_vtk, tmp_path) -> None:
    """Resumed from its last checkpoint, a run continues in its folder: its metrics.csv goes on
    from the checkpoint's step (a row logged after it, by the stopped run, is dropped) and
    best-*.ckpt is the best of every validation, before and after the resume."""
    quick = (*TINY[:-2], "--trainer.limit_train_batches", "2")
    assert run_vtk("fit", RECIPE, *quick, "--trainer.max_epochs", "2") == 0
    run = tmp_path / "runs" / "demo_classification" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    metrics = run / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    stale = [""] * len(header)
    stale[header.index("step")], stale[header.index("train/lr")] = "99", "1.0"
    metrics.write_text("\n".join([*lines, ",".join(stale)]) + "\n")  # after the checkpoint
    assert run_vtk("fit", RECIPE, *quick, "--trainer.max_epochs", "4", "--ckpt_path", last) == 0
    assert not (run.parent / "version_1").exists()
    header = metrics.read_text().splitlines()[0].split(",")
    rows = [dict(zip(header, r.split(","))) for r in metrics.read_text().splitlines()[1:]]
    assert "99" not in {r["step"] for r in rows}
    scores = [float(r["val/acc1"]) for r in rows if r.get("val/acc1")]
    assert len(scores) == 4  # two validations before the resume, two after
    (best,) = (run / "checkpoints").glob("best*.ckpt")
    state = torch.load(last, weights_only=False, map_location="cpu")
    kept = [v for k, v in state["callbacks"].items() if "'monitor': 'val/acc1'" in k]
    assert kept and float(kept[0]["best_model_score"]) == pytest.approx(max(scores))
    assert Path(kept[0]["best_model_path"]).name == best.name


def test_ckpt_path_last_without_a_checkpoint_is_a_clear_error(run_vtk) -> None:
    message = run_vtk("fit", RECIPE, *TINY, "--ckpt_path", "last")
    assert isinstance(message, str)
    assert message.startswith("vtk: error: --ckpt_path last: no last checkpoint in")
    assert "--ckpt_path auto" in message


def test_ckpt_path_auto_starts_a_new_run_when_there_is_none(run_vtk, vtk_log) -> None:
    assert run_vtk("fit", RECIPE, *TINY, "--trainer.max_steps", "1", "--ckpt_path", "auto") == 0
    assert "starting a new run" in vtk_log.text and "no checkpoint to resume in" in vtk_log.text


def test_another_recipes_checkpoint_is_refused_by_name(run_vtk, tmp_path) -> None:
    assert run_vtk("fit", RECIPE, *TINY, "--trainer.max_steps", "1") == 0
    ckpt = next(tmp_path.rglob("last.ckpt"))
    message = run_vtk(
        "fit", RECIPE, *TINY, "--ckpt_path", ckpt,
        "--model.init_args.model.init_args.backbone.init_args.arch", "resnet34",
    )  # fmt: skip
    assert isinstance(message, str)
    assert "was saved by a different model than this recipe builds" in message
    assert "backbone.init_args.arch: 'resnet18' in the checkpoint, 'resnet34' here" in message


def test_scale_lr_from_applies_the_linear_rule(run_vtk, vtk_log) -> None:
    assert run_vtk("fit", RECIPE, *TINY, "--trainer.max_steps", "1", "--scale_lr_from", "4") == 0
    # the demo's AdamW lr 1e-3 for a total batch of 4, run with 8 x 1 process x 1
    assert "LR scaled x2 to 0.002 (linear rule): total batch 8 = batch_size 8 x 1" in vtk_log.text


def test_a_run_with_auto_class_weights_resumes_validates_and_tests(run_vtk, tmp_path) -> None:
    """class_weights: auto is resolved from the training masks at fit and kept in the
    checkpoint: the run resumes, and vtk validate / vtk test score its loss with them."""
    losses = (
        '[{"class_path": "vtk.losses.CrossEntropyLoss", "init_args": {"class_weights": "auto"}}]'
    )
    quick = ("--model.init_args.losses", losses, "--data.crop_size", "64", "--data.num_workers",
             "0", "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "2")  # fmt: skip
    assert run_vtk("fit", "demo_segmentation", *quick, "--trainer.max_steps", "2") == 0
    last = tmp_path / "runs" / "demo_segmentation" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True, map_location="cpu")
    weights = saved["vtk_class_weights"]["0"]
    assert len(weights) == 4 and all(w > 0 for w in weights)
    assert run_vtk("fit", "demo_segmentation", *quick, "--trainer.max_steps", "4",
                   "--ckpt_path", str(last)) == 0  # fmt: skip
    resumed = last  # a resumed run continues in its own folder
    again = torch.load(resumed, weights_only=True, map_location="cpu")
    assert again["global_step"] == 4 and again["vtk_class_weights"]["0"] == weights
    for sub in ("validate", "test"):
        assert run_vtk(sub, "demo_segmentation", *quick, "--ckpt_path", str(resumed),
                       "--trainer.logger", "false") == 0, sub  # fmt: skip


def _recipe_of(base: str, tmp_path: Path, every_n_train_steps: int) -> Path:
    """The installed recipe ``base`` whose `last` checkpoint is written every few steps and
    whose run records the images each rank trains on (:class:`helpers.SeenImages`)."""
    source = recipes_dir() / f"{base}.yaml"
    config = yaml.safe_load(source.read_text())
    callbacks = default_run_config(source, config["model"]["class_path"])["trainer.callbacks"]
    for cb in callbacks:
        if cb["init_args"].get("filename") == "last":
            cb["init_args"]["every_n_train_steps"] = every_n_train_steps
    callbacks.append({"class_path": "helpers.SeenImages", "init_args": {"folder": str(tmp_path)}})
    config["trainer"]["callbacks"] = callbacks
    path = tmp_path / f"{base}.yaml"  # the run folder is named after it
    path.write_text(yaml.safe_dump(config))
    return path


def _grey_images(folder: Path, levels: list[int], masks: bool = False) -> None:
    """One image per grey level (its identity in :class:`helpers.SeenImages`); for a mask
    folder, each with a mask beside it."""
    from PIL import Image

    for k, level in enumerate(levels):
        where = folder if masks else folder / "abc"[k % 3]
        where.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 18), (level,) * 3).save(where / f"{level}.png")
        if masks:
            Image.new("L", (20, 18), k % 3).save(where / f"{level}_mask.png")


def _each_image_once(
    tmp_path: Path, recipe: Path, args: tuple, ranks: int, levels: list[int]
) -> None:
    """Run ``vtk fit RECIPE ARGS`` (epoch-based, 3 images per batch and rank), SIGKILL every
    process once a checkpoint after step 2 is written, resume from last.ckpt: counted over the
    ranks and both runs (the first run's steps up to its checkpoint, the resumed run's from
    there), every image of ``levels`` is trained on exactly once."""
    args = (str(recipe), *args, "--trainer.accelerator", "cpu", "--trainer.devices", str(ranks),
            "--trainer.strategy", "ddp" if ranks > 1 else "auto", "--trainer.max_epochs", "1",
            "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "VTK_TEST_STEP_SLEEP": "1"}
    proc = subprocess.Popen(
        [VTK, "fit", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, start_new_session=True,
    )  # fmt: skip
    last = tmp_path / "runs" / recipe.stem / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file() and _step(last) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)  # every rank, mid-epoch
    proc.wait()
    killed_at = _step(last)
    assert 2 <= killed_at < len(levels) // (3 * ranks)
    before = {r: (tmp_path / f"seen_rank{r}.txt").read_text().split("\n") for r in range(ranks)}
    for r in range(ranks):
        (tmp_path / f"seen_rank{r}.txt").unlink()

    env["VTK_TEST_STEP_SLEEP"] = "0"
    resumed = subprocess.run([VTK, "fit", *args, "--ckpt_path", "last"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    seen: list[int] = []
    for r in range(ranks):
        first = [ln.split() for ln in before[r] if ln]
        seen += [int(g) for step, g in first if int(step) < killed_at]  # up to the checkpoint
        after = [ln.split() for ln in (tmp_path / f"seen_rank{r}.txt").read_text().splitlines()]
        assert all(int(step) >= killed_at for step, _ in after)
        seen += [int(g) for _, g in after]
    assert sorted(seen) == levels  # each image once: none lost, none twice


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_a_killed_run_trains_each_image_of_the_epoch_once(ranks, tmp_path) -> None:
    """An epoch-based fit (one process, and 2-process DDP) killed (SIGKILL, every process) in
    the middle of its epoch, then resumed from last.ckpt, trains on each image of the epoch
    exactly once. (The position the loader saves was never loaded back: an epoch-based run
    builds its loader before the restore, to count its steps for the LR schedule; the
    interrupted epoch started again from its first batch.)"""
    from PIL import Image

    levels = list(range(20, 236, 6))  # 36 images, one grey level each: their identity
    _grey_images(tmp_path / "set" / "train", levels)
    for c in "abc":
        (tmp_path / "set" / "val" / c).mkdir(parents=True)
        Image.new("RGB", (20, 18), (9,) * 3).save(tmp_path / "set" / "val" / c / "v.png")
    recipe = _recipe_of("demo_classification", tmp_path, every_n_train_steps=2)
    args = ("--data", "vtk.data.ImageFolderDataModule", "--data.root", str(tmp_path / "set"),
            "--data.image_size", "16", "--data.resize_size", "16", "--data.batch_size", "3",
            "--data.num_workers", "0")  # fmt: skip
    _each_image_once(tmp_path, recipe, args, ranks, levels)


@pytest.mark.slow
def test_a_killed_streaming_run_trains_each_image_of_the_epoch_once(tmp_path) -> None:
    """The same for a segmentation run reading a stream (vtk optimize's LitData chunks) under
    2-process DDP: the streamed split resumes as the files do."""
    pytest.importorskip("litdata")
    from vtk.data.stream import optimize

    levels = list(range(20, 236, 6))
    _grey_images(tmp_path / "set" / "train", levels, masks=True)
    _grey_images(tmp_path / "set" / "val", [9, 15, 250], masks=True)
    recipe = _recipe_of("demo_segmentation", tmp_path, every_n_train_steps=2)
    files = ("--data", "vtk.data.MaskFolderDataModule", "--data.train_dir",
             str(tmp_path / "set" / "train"), "--data.val_dir", str(tmp_path / "set" / "val"),
             "--data.num_classes", "3", "--data.crop_size", "16", "--data.scale_range", "[1, 1]",
             "--data.batch_size", "3", "--data.num_workers", "0")  # fmt: skip
    optimize(str(recipe), tmp_path / "stream", files, workers=1)
    args = (*files, "--data.stream", str(tmp_path / "stream"))
    _each_image_once(tmp_path, recipe, args, 2, levels)
