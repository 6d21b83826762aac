"""On a CUDA GPU (skipped without one; tools/gpu_check.sh runs them): a 16-mixed fit, SyncBN
under DDP (NCCL), the network's outputs against the CPU's, and the predictor's fast path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import QUIET

import vtk
from vtk.models import Classifier, ResNet

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GPU = ("--trainer.accelerator", "gpu", "--trainer.devices", "1")


def test_a_16_mixed_fit_with_channels_last(fit_demo) -> None:
    ckpt = fit_demo("demo_segmentation", *GPU, "--trainer.precision", "16-mixed",
                    "--model.init_args.channels_last", "true", "--data.crop_size", "64", steps=4)  # fmt: skip
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_sync_batchnorm_under_ddp_with_nccl(run_vtk, tmp_path) -> None:
    code = run_vtk(
        "fit", "demo_segmentation", *GPU, "--trainer.strategy", "ddp",
        "--trainer.sync_batchnorm", "true", "--trainer.max_steps", 3,
        "--trainer.limit_val_batches", 1, "--data.crop_size", 64, *QUIET,
    )  # fmt: skip
    assert code == 0, code


def test_the_gpu_computes_what_the_cpu_does() -> None:
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = Classifier(ResNet("resnet50"), num_classes=10).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        cpu = model(x)
        gpu = model.cuda()(x.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3 * float(cpu.abs().max()))


def test_the_predictor_runs_the_fast_path_on_the_gpu(fit_demo) -> None:
    ckpt = fit_demo("demo_segmentation", "--data.crop_size", "64", steps=1)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    on_gpu = vtk.load(ckpt, device="cuda").predict(image)["labels"]
    on_cpu = vtk.load(ckpt, device="cpu").predict(image)["labels"]
    assert on_gpu.shape == (70, 90) and (on_gpu == on_cpu).mean() > 0.99
