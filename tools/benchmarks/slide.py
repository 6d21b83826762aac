"""``slide``: sliding-window segmentation of a large image against the whole image, with
the peak memory of each."""

import argparse
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import (
    print_ratios,
    time_alternating,
)
from vtk.models import DeepLabV3Head, ResNet, Segmenter

#: the entry point, which a fresh process runs to measure one mode's memory
ENTRY = Path(__file__).resolve().parents[1] / "benchmark.py"


def _deeplabv3_resnet50(num_classes: int = 19) -> nn.Module:
    """DeepLabV3-ResNet50 as torchvision's ``deeplabv3_resnet50`` (OS 8), Cityscapes' classes."""
    torch.manual_seed(0)
    return Segmenter(
        ResNet("resnet50", output_stride=8),
        head=partial(DeepLabV3Head, atrous_rates=(12, 24, 36)),
        num_classes=num_classes,
    ).eval()


TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _slide_modes(args: argparse.Namespace, network: Callable) -> dict[str, Callable]:
    from vtk.models import inference

    modes = {
        "whole": lambda x: inference.whole(network, x),
        "slide": lambda x: inference.slide(
            network, x, args.window, args.stride, batch=args.slide_batch
        ),
    }
    if args.tta:
        modes["whole+TTA"] = lambda x: inference.augmented(modes["whole"], x, TTA_SCALES, flip=True)
    return modes


def _status_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of this process, from Linux's /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Set the peak resident memory to the current one (Linux >= 4.0: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _cpu_peak(args: argparse.Namespace, mode: str) -> float:
    """Peak resident memory (MiB) of a fresh process running ``mode`` once, above the model's."""
    cmd = [sys.executable, str(ENTRY), "slide", "--_memory_of", mode, "--height", str(args.height),
           "--width", str(args.width), "--window", str(args.window), "--stride",
           str(args.stride), "--slide_batch", str(args.slide_batch)]  # fmt: skip
    if args.tta:
        cmd.append("--tta")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def benchmark_slide(args: argparse.Namespace) -> None:
    """Whole-image against sliding-window inference of one large image (and the TTA cost)."""
    device = torch.device(args.device)
    model = _deeplabv3_resnet50().to(device)

    def network(x: torch.Tensor) -> torch.Tensor:
        return model(x)["out"]

    modes = _slide_modes(args, network)
    x = torch.randn(1, 3, args.height, args.width, device=device)
    if args._memory_of:  # the child process of _cpu_peak
        _reset_peak_rss()
        before = _status_mib("VmRSS")
        with torch.inference_mode():
            modes[args._memory_of](x)
        print(_status_mib("VmHWM") - before)
        return
    cuda = device.type == "cuda"
    peaks: dict[str, float] = {}

    def step_for(name: str) -> Callable[[], None]:
        def step() -> None:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with torch.inference_mode():
                modes[name](x)
            if cuda:
                peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**20

        return step

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = time_alternating({k: step_for(k) for k in modes}, args.steps, args.warmup, sync)
    if not cuda:
        peaks = {k: _cpu_peak(args, k) for k in modes}
    med = print_ratios(
        f"DeepLabV3-ResNet50 (OS 8) inference of one {args.width}x{args.height} image, "
        f"{args.device}; slide: {args.window} windows, stride {args.stride}, "
        f"{args.slide_batch} at a time; median of {args.steps}:",
        times,
        "whole",
    )
    kind = "allocated" if cuda else "resident"
    print(f"  peak {kind} memory: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()))
    print(f"  ratio slide/whole memory = {peaks['slide'] / peaks['whole']:.3f}")
    if args.tta:
        print(
            f"  TTA ({len(TTA_SCALES)} scales x flip) cost factor = "
            f"{med['whole+TTA'] / med['whole']:.2f}"
        )
