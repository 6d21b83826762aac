"""Benchmark vtk's models against torchvision's, in the same process, alternating.

    python tools/benchmark.py segmentation                       # CPU, batch 2, 256x256
    python tools/benchmark.py segmentation --device cuda --batch 8 --size 513 --steps 20

For each model a train step is forward, loss, backward and an SGD step, timed after warm-up;
vtk's and torchvision's steps alternate (A B, B A, ...) so both see the same machine state. The ratio is
vtk / torchvision (below 1.0: vtk is faster). Both models hold the same weights.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vtk.models import DeepLabV3Head, FCNHead, ResNet, Segmenter


def deeplabv3_resnet101_pair(num_classes: int = 21) -> tuple[nn.Module, nn.Module]:
    """vtk's and torchvision's DeepLabV3-ResNet101 (output stride 8, rates 12/24/36, aux head)."""
    reference = torchvision.models.segmentation.deeplabv3_resnet101(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True
    )
    ours = Segmenter(
        ResNet("resnet101", output_stride=8),
        head=partial(DeepLabV3Head, atrous_rates=(12, 24, 36)),
        num_classes=num_classes,
        aux_head=FCNHead,
    )
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def segmentation_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    out = model(x)
    loss = F.cross_entropy(out["out"], y, ignore_index=255)
    loss = loss + 0.4 * F.cross_entropy(out["aux"], y, ignore_index=255)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_alternating(
    steps: dict[str, Callable[[], None]], rounds: int, warmup: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for i in range(warmup + rounds):
        order.reverse()  # A B, B A, A B, ...: neither model always runs first
        for name in order:
            step = steps[name]
            sync()
            start = time.perf_counter()
            step()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def benchmark_segmentation(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours, reference = (m.to(device).train() for m in deeplabv3_resnet101_pair())
    if args.channels_last:
        ours, reference = (
            ours.to(memory_format=torch.channels_last),
            reference.to(memory_format=torch.channels_last),
        )
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 21, (args.batch, args.size, args.size), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step_for(model: nn.Module) -> Callable[[], None]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def step() -> None:
            with amp:
                segmentation_step(model, optimizer, x, y)

        return step

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = time_alternating(
        {"vtk": step_for(ours), "torchvision": step_for(reference)}, args.steps, args.warmup, sync
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"DeepLabV3-ResNet101 (OS 8, aux) train step, batch {args.batch} x {args.size}^2, "
        f"{args.device}{', channels_last' if args.channels_last else ''}{', bf16' if args.bf16 else ''}, "
        f"median of {args.steps}:"
    )
    print(f"  vtk          {med['vtk']:.3f} s")
    print(f"  torchvision  {med['torchvision']:.3f} s")
    print(f"  ratio vtk/torchvision = {med['vtk'] / med['torchvision']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", choices=["segmentation"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    args = parser.parse_args()
    {"segmentation": benchmark_segmentation}[args.task](args)


if __name__ == "__main__":
    main()
