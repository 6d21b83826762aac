"""The data side: ``decode`` (JPEG decoding of large photos) and ``data`` (the loader against
the model)."""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.common import (
    detection_step,
    fcos_resnet50,
    time_alternating,
)
from vtk.models import FPN


def benchmark_decode(args: argparse.Namespace) -> None:
    """Large photos (``--width`` x ``--height`` JPEGs, written to a temporary folder): images per
    second one loader process decodes them whole and in JPEG draft mode at the detector's size
    (shorter side ``--size``, longer at most ``--max_size``), against the images per second the
    FCOS-ResNet50-FPN train step consumes at that size."""
    import tempfile

    from PIL import Image

    from vtk.data.io import read_image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.images):
            # smooth content (as photos are) so the JPEG's size is a photo's, not noise's
            small = rng.integers(0, 255, (args.height // 16, args.width // 16, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((args.width, args.height), Image.BILINEAR)
            paths.append(Path(folder) / f"{i}.jpg")
            image.save(paths[-1], quality=90)
        fit = (args.size, args.max_size)
        rates, shapes = {}, {}
        for name, kwargs in (("whole", {}), ("draft", {"fit": fit})):
            start = time.perf_counter()
            for p in paths:
                shapes[name] = read_image(p, **kwargs).shape
            rates[name] = len(paths) / (time.perf_counter() - start)
    torch.manual_seed(0)
    model = fcos_resnet50(FPN, args.size, num_classes=91)
    model.transform.max_size = args.max_size
    h, w = shapes["draft"][:2]
    images = [torch.rand(3, h, w) for _ in range(args.batch)]
    box = {"boxes": torch.tensor([[10.0, 10.0, 200.0, 150.0]]), "labels": torch.tensor([1])}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = time_alternating(
        {"train step": lambda: detection_step(model, optimizer, images, [box] * args.batch)},
        args.steps, args.warmup, lambda: None,
    )  # fmt: skip
    model_rate = args.batch / statistics.median(times["train step"])
    print(f"{args.images} JPEGs of {args.width}x{args.height}, detector resize {args.size} "
          f"(longer at most {args.max_size}), one loader process, {args.device}:")  # fmt: skip
    for name in ("whole", "draft"):
        print(f"  decode {name:5s} -> {shapes[name][1]}x{shapes[name][0]}: "
              f"{rates[name]:.1f} images/s")  # fmt: skip
    print(f"  ratio draft/whole decode rate = {rates['draft'] / rates['whole']:.2f}")
    print(f"  FCOS-ResNet50-FPN train step, batch {args.batch}: {model_rate:.2f} images/s; one "
          f"loader process decodes {rates['draft'] / model_rate:.0f}x that (draft), "
          f"{rates['whole'] / model_rate:.0f}x (whole)")  # fmt: skip


def _train_step(
    task: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, bf16: bool = False
) -> None:
    if getattr(task, "channels_last", False) and batch["image"].dim() == 4:
        batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = task.training_losses(batch)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def benchmark_data(args: argparse.Namespace) -> None:
    """A recipe's training DataLoader against its model's train step (with the recipe's
    channels_last and bf16), images/s: the demo recipes, or ``--recipe NAME`` with overrides
    (``--data.root DIR``)."""
    from vtk.recipe import Recipe

    names = [args.recipe] if args.recipe else ["demo_classification", "demo_segmentation",
                                               "demo_detection"]  # fmt: skip
    for name in names:
        recipe = Recipe.load(name, ["--data.num_workers", str(args.workers),
                                    *args.overrides])  # fmt: skip
        task, dm = recipe.build()
        bf16 = str(recipe.config.get("trainer", {}).get("precision")) == "bf16-mixed"
        dm.setup("fit")
        if hasattr(task, "setup") and getattr(task, "losses", None) is not None:
            for loss in task.losses:  # class_weights: auto, as the task resolves it at fit
                if getattr(loss, "auto", False):
                    loss.set_class_weights(dm.class_weights())
        loader = dm.train_dataloader()
        batches = iter(loader)
        next(batches)  # workers started
        start, seen = time.perf_counter(), 0
        for _ in range(args.steps):
            batch = next(batches)
            seen += len(batch["image"])
        data_rate = seen / (time.perf_counter() - start)
        task.train()
        if getattr(task, "channels_last", False):
            task.model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(task.parameters(), lr=1e-4)

        _train_step(task, optimizer, batch, bf16)  # warm-up
        n = max(2, args.steps // 4)
        start = time.perf_counter()
        for _ in range(n):
            _train_step(task, optimizer, batch, bf16)
        model_rate = n * len(batch["image"]) / (time.perf_counter() - start)
        print(
            f"{name}: data {data_rate:.1f} images/s ({args.workers} workers), model train "
            f"{model_rate:.1f} images/s{' (bf16)' if bf16 else ''}: ratio data/model = "
            f"{data_rate / model_rate:.2f}"
        )


def benchmark_stream(args: argparse.Namespace) -> None:
    """A recipe's training loader reading its files against the same loader reading a LitData
    stream of them (``vtk optimize``, written to a temporary folder first, or ``--stream``),
    images/s, alternating rounds in one process; also the writing time and the bytes."""
    import tempfile

    from vtk.data.stream import optimize
    from vtk.recipe import Recipe

    name = args.recipe or "demo_segmentation"
    overrides = ["--data.num_workers", str(args.workers), *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        stream = args.stream
        if stream is None:
            stream = str(Path(tmp) / "stream")
            start = time.perf_counter()
            written = optimize(name, stream, overrides, splits=("train",), workers=args.workers)
            took = time.perf_counter() - start
            size = sum(p.stat().st_size for p in Path(stream).rglob("*") if p.is_file())
            print(f"{name}: wrote {written['train']} training samples in {took:.1f} s "
                  f"({size / 2**20:.1f} MiB of chunks)")  # fmt: skip
        loaders = {}
        for source, extra in (("files", []), ("stream", ["--data.stream", stream])):
            dm = Recipe.load(name, [*overrides, *extra], weights=False).datamodule()
            dm.datasets["train"] = dm.make_dataset("train")  # (only the training split written)
            loaders[source] = dm
        rates: dict[str, list[float]] = {"files": [], "stream": []}
        for round_ in range(args.rounds):
            order = ("files", "stream") if round_ % 2 == 0 else ("stream", "files")
            for source in order:
                batches = iter(loaders[source].train_dataloader())
                next(batches)  # workers started, first chunk fetched
                start, seen = time.perf_counter(), 0
                for _ in range(args.steps):
                    seen += len(next(batches)["image"])
                rates[source].append(seen / (time.perf_counter() - start))
        files, streamed = (statistics.median(rates[s]) for s in ("files", "stream"))
        print(f"{name}: training loader, {args.workers} workers, median of {args.rounds} rounds "
              f"of {args.steps} batches: files {files:.1f} images/s, stream {streamed:.1f} "
              f"images/s: ratio stream/files = {streamed / files:.2f}")  # fmt: skip
