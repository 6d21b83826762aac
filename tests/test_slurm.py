"""tools/slurm/train.sbatch, simulated: a stand-in `srun` starts its tasks as local processes
with the environment SLURM gives a 2-task job, and they form one DDP group of world size 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

SBATCH = ROOT / "tools" / "slurm" / "train.sbatch"

FAKE_SRUN = """#!/bin/bash
# one process per task, as srun does, each with its SLURM_PROCID / SLURM_LOCALID
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i "$@" > "task$i.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
exit $status
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbatch(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "vtk", "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
    }  # fmt: skip
    return subprocess.run(
        ["bash", str(SBATCH), str(ROOT / "recipes" / "demo_classification.yaml"),
         "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--data.image_size", "32",
         "--data.batch_size", "4", "--data.num_workers", "0", *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_the_sbatch_template_forms_one_ddp_group_and_a_requeued_job_resumes(tmp_path) -> None:
    first = _sbatch(tmp_path)
    logs = [(tmp_path / f"task{i}.log").read_text() for i in range(2)]
    assert first.returncode == 0, first.stderr[-2000:] + logs[0][-2000:] + logs[1][-2000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs[0] and "MEMBER: 2/2" not in logs[0]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]  # two tasks, not processes spawned by each
    run = tmp_path / "runs" / "demo_classification" / "job4242"
    assert (run / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert "no checkpoint to resume" in logs[0]

    requeued = _sbatch(tmp_path, "--trainer.max_epochs", "2")  # the same job id, started again
    logs = [(tmp_path / f"task{i}.log").read_text() for i in range(2)]
    assert requeued.returncode == 0, logs[0][-3000:]
    resumed_from = Path("runs/demo_classification/job4242/version_0/checkpoints/last.ckpt")
    assert f"resuming from {resumed_from}" in logs[0]
    assert (run / "version_1" / "checkpoints" / "last.ckpt").is_file()  # the job's own folder
