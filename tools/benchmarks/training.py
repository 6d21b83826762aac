"""Train steps and epochs: ``train``, ``epochs``, ``segmentation``, ``detection``, ``grouping``
and ``necks``."""

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from benchmarks.common import (
    TRAIN_SETTINGS,
    deeplabv3_resnet101_pair,
    detection_batch,
    detection_step,
    detection_steps,
    fcos_resnet50,
    fcos_resnet50_fpn_pair,
    native_bf16,
    print_ratios,
    segmentation_step,
    setting_name,
    time_alternating,
    train_pair,
    train_step_for,
)
from vtk.models import FCOS, FPN, ASFFNeck, ResNet, RFBNeck


def benchmark_train(args: argparse.Namespace) -> None:
    """Each task's reference architecture trained with vtk's switches against torchvision's
    eager fp32 step (same weights, same batch, alternating, median)."""
    device = torch.device(args.device)
    archs = list(TRAIN_SETTINGS) if args.arch == "all" else [args.arch]
    bf16_ok = native_bf16(device)
    for arch in archs:
        (batch, h, w), title = TRAIN_SETTINGS[arch]
        batch, h, w = (args.batch or batch), (args.size or h), (args.size or w)
        torch.manual_seed(0)
        ours, reference = train_pair(arch, h, w)
        if arch == "fcos_resnet50_fpn":
            inputs: tuple = detection_batch(batch, h, device)
        else:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(batch, 3, h, w, generator=g).to(device)
            classes = 1000 if arch == "resnet50" else 21
            shape = (batch,) if arch == "resnet50" else (batch, h, w)
            inputs = (x, torch.randint(0, classes, shape, generator=g).to(device))
        variants = {"torchvision": (reference, False, False), "vtk": (ours, False, False)}
        variants["vtk channels_last"] = (copy.deepcopy(ours), True, False)
        if bf16_ok or args.bf16:
            variants["vtk cl+bf16"] = (copy.deepcopy(ours), True, True)
        if device.type == "cuda":  # what the GPU recipes train with (16-mixed)
            variants["vtk cl+fp16"] = (copy.deepcopy(ours), True, "fp16")
        if args.compile:
            compiled = copy.deepcopy(ours)
            # as VisionTask(compile=True): in place (same parameter names); a detector's
            # backbone and neck only (torchvision's detection code breaks graphs)
            (compiled.backbone if arch == "fcos_resnet50_fpn" else compiled).compile()
            best = bf16_ok or args.bf16
            variants["vtk cl+" + ("bf16+" if best else "") + "compile"] = (compiled, True, best)
        steps = {
            name: train_step_for(arch, model, inputs, cl, bf16, device)
            for name, (model, cl, bf16) in variants.items()
        }
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        times = time_alternating(steps, args.steps, args.warmup, sync)
        native = "native bf16" if bf16_ok else "no native bf16"
        print_ratios(
            f"{title} train step, batch {batch} x {h}x{w}, {args.device} ({native}), median of "
            f"{args.steps}:",
            times,
            "torchvision",
        )


def benchmark_epochs(args: argparse.Namespace) -> None:
    """A recipe's training epoch (loader, model, optimiser, Lightning) with and without each
    switch: ``32-true`` / ``bf16-mixed`` x NCHW / channels_last; one warm-up epoch, then
    ``--epochs`` timed ones (no validation, no checkpoints)."""
    import lightning.pytorch as pl

    from vtk.recipe import Recipe

    if not args.recipe:
        raise SystemExit("benchmark.py epochs: give --recipe NAME (and its data overrides)")

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.times.append(time.perf_counter() - self.start)

    results = {}
    switches = [("32-true", False), ("32-true", True), ("bf16-mixed", False), ("bf16-mixed", True)]
    if args.device == "cuda":  # what the GPU recipes train with
        switches.append(("16-mixed", True))
    for precision, channels_last in switches:
        recipe = Recipe.load(args.recipe, [
            "--data.num_workers", str(args.workers), *args.overrides,
            "--model.init_args.channels_last", str(channels_last).lower(),
        ])  # fmt: skip
        task, dm = recipe.build()
        timer = EpochTimer()
        trainer = pl.Trainer(
            accelerator=args.device, devices=1, precision=precision, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, max_epochs=1 + args.epochs, callbacks=[timer],
            limit_train_batches=args.limit or 1.0,
        )  # fmt: skip
        trainer.fit(task, datamodule=dm)
        name = {"32-true": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}[precision] + (
            " + channels_last" if channels_last else ""
        )
        results[name] = statistics.median(timer.times[1:])
        print(f"  {name:<22} {results[name]:.1f} s per epoch", flush=True)
    base = results["fp32"]
    print(f"{args.recipe}: training epoch ({args.device}, {args.workers} loader workers), "
          f"median of {args.epochs} after one warm-up:")  # fmt: skip
    for name, t in results.items():
        print(f"  {name:<22} {t:7.1f} s   ratio to fp32 = {t / base:.2f}")


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


def benchmark_detection(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    ours, reference = fcos_resnet50_fpn_pair(args.size)
    steps = detection_steps({"vtk": ours, "torchvision": reference}, args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = time_alternating(steps, args.steps, args.warmup, sync)
    print_ratios(f"FCOS-ResNet50-FPN train step, {setting_name(args)}:", times, "torchvision")


def benchmark_grouping(args: argparse.Namespace) -> None:
    """Aspect-ratio grouped batches against mixed ones on a mixed-orientation set (half 640x480,
    half 480x640, as COCO's photos): the padded share of the pixels the detector computes (its
    resize, batches padded to the largest image and to 32), and the FCOS train step time on the
    same epoch's first batches."""
    from vtk.data.detection import aspect_ratio_bins
    from vtk.data.io import resize_scale
    from vtk.data.loading import TrainSampler

    n = args.images
    sizes = [(480, 640) if i % 2 else (640, 480) for i in range(n)]  # (height, width)
    groups = np.digitize([w / h for h, w in sizes], aspect_ratio_bins(3))
    scale_of = {s: resize_scale(s, args.size, args.max_size) for s in set(sizes)}

    def resized(i: int) -> tuple[int, int]:
        h, w = sizes[i]
        return round(h * scale_of[sizes[i]]), round(w * scale_of[sizes[i]])

    def batches(grouped: bool) -> list[list[int]]:
        sampler = TrainSampler(list(range(n)), 1, 0, seed=0, batch_size=args.batch,
                               groups=groups if grouped else None)  # fmt: skip
        order = list(sampler)
        return [
            order[k : k + args.batch] for k in range(0, len(order) - args.batch + 1, args.batch)
        ]

    def padded_share(batch_list: list[list[int]]) -> float:
        real = padded = 0
        for b in batch_list:
            hw = [resized(i) for i in b]
            ph, pw = (-(-max(v) // 32) * 32 for v in zip(*hw))
            real += sum(h * w for h, w in hw)
            padded += len(b) * ph * pw
        return 1 - real / padded

    shares = {name: padded_share(batches(name == "grouped")) for name in ("mixed", "grouped")}
    print(f"Padded share of the computed pixels, {n} images (half portrait), batch {args.batch}, "
          f"shorter side {args.size} (longer at most {args.max_size}):")  # fmt: skip
    for name, share in shares.items():
        print(f"  {name:8s} {share:.1%}")
    torch.manual_seed(0)
    model = FCOS(ResNet("resnet18", out_indices=(1, 2, 3)), 91, neck=FPN,
                 min_size=args.size, max_size=args.max_size).train()  # fmt: skip
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    box = {"boxes": torch.tensor([[10.0, 10.0, 200.0, 150.0]]), "labels": torch.tensor([1])}

    def step_for(name: str) -> Callable[[], None]:
        todo = iter(batches(name == "grouped") * 2)

        def step() -> None:
            b = next(todo)
            images = [torch.rand(3, *sizes[i], generator=g) for i in b]
            detection_step(model, optimizer, images, [box] * len(b))

        return step

    times = time_alternating({k: step_for(k) for k in ("grouped", "mixed")}, args.steps,
                             args.warmup, lambda: None)  # fmt: skip
    print_ratios(f"FCOS-ResNet18-FPN train step, batch {args.batch}, CPU fp32, median of {args.steps}:",
            times, "mixed")  # fmt: skip


def benchmark_necks(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    models = {
        "FPN": fcos_resnet50(FPN, args.size),
        "FPN+ASFF": fcos_resnet50(ASFFNeck, args.size),
        "RFB": fcos_resnet50(RFBNeck, args.size),
    }
    params = {k: sum(p.numel() for p in m.backbone.fpn.parameters()) for k, m in models.items()}
    steps = detection_steps(models, args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = time_alternating(steps, args.steps, args.warmup, sync)
    print_ratios(f"FCOS-ResNet50 train step by neck, {setting_name(args)}:", times, "FPN")
    print("  neck parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
