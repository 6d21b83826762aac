"""DDP for real on the CPU (2 processes, gloo) through the `vtk` command: every task trains,
and validation under DDP gives exactly the single-process metrics on an odd-sized set."""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from vtk.data import make_demo_classification

pytestmark = pytest.mark.slow  # two processes each

DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
ONE = ("--trainer.accelerator", "cpu", "--trainer.devices", "1")


def metric(output: str, key: str) -> float:
    match = re.search(rf"{re.escape(key)}(?![\w/])\s*[│|]?\s*(-?[0-9.]+(?:e-?[0-9]+)?)", output)
    assert match, f"{key} not in the output:\n{output[-2000:]}"
    return float(match.group(1))


def fit_ddp(
    vtk_process, recipe: str, tmp_path: Path, *extra: str, torchrun: bool = False
) -> tuple[str, dict[str, float]]:
    """``vtk fit`` under 2-process DDP for two steps, then validation on the whole (odd-sized)
    validation set: the last checkpoint and the validation metrics DDP logged for it.

    The processes are started by Lightning, or with ``torchrun`` (the README's command)."""
    runs = tmp_path / "runs"
    torchrun_ = str(Path(sys.executable).with_name("torchrun"))
    launcher = (torchrun_, "--standalone", "--nproc_per_node", "2") if torchrun else ()
    fit = vtk_process(
        "fit", recipe, *DDP, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.num_sanity_val_steps", "0", "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", *extra,
        launcher=launcher, timeout=300,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "MEMBER: 2/2" in fit.stderr + fit.stdout  # one DDP group of world size 2
    rows = list(csv.DictReader((next(runs.rglob("metrics.csv"))).open()))
    logged = {k: float(v) for row in rows for k, v in row.items() if k.startswith("val/") and v}
    return str(next(runs.rglob("last.ckpt"))), logged


def validate_single(run_vtk, capsys, recipe: str, ckpt: str, *extra: str) -> str:
    """The output of ``vtk validate`` on ``ckpt`` in one process (this one)."""
    capsys.readouterr()
    code = run_vtk(
        "validate", recipe, *ONE, "--ckpt_path", ckpt, "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", *extra,
    )  # fmt: skip
    assert code == 0, code
    return capsys.readouterr().out


def test_segmentation_ddp_miou_equals_single_process(
    tmp_path, vtk_process, run_vtk, capsys
) -> None:
    recipe = "demo_segmentation"  # 51 validation images: odd
    # sliding windows (64 px, stride 48) over each image at its own size (~112 px): several
    # overlapping windows per image, on whichever rank the image falls to
    slide = ("--model.init_args.eval_mode", "slide", "--model.init_args.window", "64",
             "--model.init_args.stride", "48")  # fmt: skip
    ckpt, ddp = fit_ddp(vtk_process, recipe, tmp_path, *slide)
    single = validate_single(run_vtk, capsys, recipe, ckpt, *slide)
    for key in ("val/mIoU", "val/acc_global"):
        assert metric(single, key) == ddp[key], key
    assert 0 < ddp["val/mIoU"] < 1


def odd_classification_set(tmp_path: Path) -> tuple[str, ...]:
    """The demo classification images cut to 16 training and 51 validation images (odd), as
    the data options of a demo_classification run."""
    demo = make_demo_classification(Path(os.environ["VTK_DATA_DIR"]) / "demo_classification")
    root = tmp_path / "odd"
    for split, count in (("train", 4), ("val", 13)):  # 4 classes x 13 = 52 ... minus one: 51
        for folder in sorted((demo / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for p in sorted(folder.iterdir())[:count]:
                shutil.copy(p, root / split / folder.name / p.name)
    next((root / "val").rglob("*.png")).unlink()
    return ("--data", "vtk.data.ImageFolderDataModule", "--data.root", str(root),
            "--data.image_size", "32", "--data.batch_size", "4")  # fmt: skip


def test_classification_ddp_top1_equals_single_process(
    tmp_path, vtk_process, run_vtk, capsys
) -> None:
    recipe = "demo_classification"
    data = odd_classification_set(tmp_path)
    ckpt, ddp = fit_ddp(vtk_process, recipe, tmp_path, *data, torchrun=True)
    single = metric(validate_single(run_vtk, capsys, recipe, ckpt, *data), "val/acc1")
    assert single == ddp["val/acc1"]
    assert single * 51 == pytest.approx(round(single * 51), abs=1e-4)  # a count out of 51


def test_detection_ddp_map_equals_single_process(tmp_path, vtk_process, run_vtk, capsys) -> None:
    """With EMA of the weights (the fine-tune recipe's callback) under Lightning's own DDP
    launcher: validation used the EMA weights, the checkpoint holds them, and one process
    validating the checkpoint gets DDP's numbers."""
    import torch

    recipe = "demo_detection"  # 101 validation images: odd
    small = ("--model.init_args.model.init_args.min_size", "96",
             "--model.init_args.model.init_args.max_size", "96")  # fmt: skip
    ema = ("--trainer.callbacks+=EMAWeightAveraging", "--trainer.callbacks.decay", "0.5")
    ckpt, ddp = fit_ddp(vtk_process, recipe, tmp_path, *small, "--data.batch_size", "4", *ema)
    saved = torch.load(ckpt, weights_only=False, map_location="cpu")
    name = "model.head.classification_head.cls_logits.weight"
    assert not torch.equal(saved["state_dict"][name], saved["current_model_state"][name])
    single = validate_single(run_vtk, capsys, recipe, ckpt)
    for key in ("val/AP", "val/AP50", "val/AR100"):
        assert metric(single, key) == pytest.approx(ddp[key], abs=1e-6), key


def test_a_failing_rank_ends_the_run_instead_of_hanging(tmp_path, vtk_process, make_voc) -> None:
    ids = [f"v{i}" for i in range(6)]
    root = make_voc(tmp_path / "VOC2012", {"train": ["a", "b", "c", "d"], "val": ids})
    Image.new("L", (48, 40), 77).save(root / "SegmentationClass" / "v3.png")  # rank 1's shard
    result = vtk_process(
        "validate", "demo_segmentation", *DDP, "--data", "vtk.data.VOCSegmentationDataModule",
        "--data.root", str(root), "--data.train_split", "train", "--data.crop_size", "32",
        "--data.batch_size", "1", "--data.num_workers", "0", "--trainer.logger", "false",
        "--data.audit", "false",  # else setup finds the mask before any rank reads it
        timeout=240,  # a hang would wait for the 30-minute collective timeout
    )  # fmt: skip
    assert result.returncode != 0
    assert "v3.png has values 77 (1920 pixels)" in result.stderr
    # rank 0 did not wait out a collective: its peer's exit closed the collective at once
    # (gloo), or Lightning saw rank 1 fail and ended the run, whichever came first
    assert (
        "Connection closed by peer" in result.stderr
        or "Forcefully terminating all other processes" in result.stderr
    ), result.stderr[-2000:]


def test_a_non_finite_loss_stops_every_rank_with_one_line(tmp_path, vtk_process) -> None:
    """`vtk fit demo_classification --model.init_args.optimizer.init_args.lr 1e12` under DDP:
    both processes stop at the same step (a process left training would hang in the next
    collective), rank 0 says why in one line, nothing is saved."""
    runs = tmp_path / "runs"
    fit = vtk_process(
        "fit", "demo_classification", *DDP, "--model.init_args.optimizer.init_args.lr", "1e12",
        "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.enable_progress_bar", "false", "--data.num_workers", "0", timeout=300,
    )  # fmt: skip
    assert fit.returncode != 0
    lines = [ln for ln in fit.stderr.splitlines() if ln.startswith("vtk: error: training stopped")]
    assert len(lines) == 1, fit.stderr[-3000:]
    assert "Traceback" not in fit.stderr
    assert not list(runs.rglob("*.ckpt"))  # nothing saved from these weights


def _node_env(launcher: str, node: int, port: int) -> dict[str, str]:
    """The environment a launcher gives the one process of node ``node`` of 2 (one device
    each): torchrun's variables, or SLURM's for a 2-node job of one task per node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PL_"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if launcher == "torchrun":
        env.update(RANK=str(node), GROUP_RANK=str(node), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                   WORLD_SIZE="2", TORCHELASTIC_RUN_ID="vtk-test")  # fmt: skip
    else:
        env.update(SLURM_JOB_ID="77", SLURM_JOB_NAME="vtk", SLURM_NTASKS="2", SLURM_NNODES="2",
                   SLURM_NTASKS_PER_NODE="1", SLURM_PROCID=str(node), SLURM_LOCALID="0",
                   SLURM_NODEID=str(node), SLURM_NODELIST="localhost")  # fmt: skip
    return env


@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_two_nodes_through_the_cli_validate_as_one_process(
    launcher, tmp_path, run_vtk, capsys
) -> None:
    """``vtk fit ... --trainer.num_nodes 2`` as two nodes of one process each on localhost,
    each started with the environment its launcher gives: one DDP group of world size 2 that
    trains and validates; its validation top-1 equals one process's on the same checkpoint."""
    import socket
    import subprocess

    from helpers import VTK

    recipe = "demo_classification"
    data = odd_classification_set(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = tmp_path / "runs"
    args = [VTK, "fit", recipe, "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.num_nodes", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar",
            "false", "--data.num_workers", "0", *data]  # fmt: skip
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    nodes = [
        subprocess.Popen(args, cwd=tmp_path, env=_node_env(launcher, node, port), **out)
        for node in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outputs[0]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]  # node 1's process, not one spawned
    rows = list(csv.DictReader(next(runs.rglob("metrics.csv")).open()))
    ddp = [float(row["val/acc1"]) for row in rows if row.get("val/acc1")]
    single = metric(
        validate_single(run_vtk, capsys, recipe, str(next(runs.rglob("last.ckpt"))), *data),
        "val/acc1",
    )
    assert ddp and single == ddp[-1]
