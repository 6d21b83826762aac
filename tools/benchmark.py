"""Benchmark vtk's models against torchvision's, in the same process, alternating.

    python tools/benchmark.py train                              # the three tasks' train steps
    python tools/benchmark.py train --arch deeplabv3_resnet50 --compile
    python tools/benchmark.py epochs --recipe deeplabv3plus_resnet18_camvid_scratch \
        --data.root path/to/CamVid                               # a recipe's epoch, per switch
    python tools/benchmark.py segmentation                       # CPU, batch 2, 256x256
    python tools/benchmark.py segmentation --device cuda --batch 8 --size 513 --steps 20
    python tools/benchmark.py detection                          # CPU, batch 2, 384x384
    python tools/benchmark.py necks                              # ASFF and RFB against FPN
    python tools/benchmark.py inference --batch 8 [--channels_last] [--compile]
    python tools/benchmark.py inference --arch deeplabv3_resnet101 --batch 1 --size 256
    python tools/benchmark.py inference --arch fcos_resnet50_fpn --batch 2 --size 384
    python tools/benchmark.py eval                               # pycocotools vs faster-coco-eval
    python tools/benchmark.py data --workers 2                   # data pipeline vs model
    python tools/benchmark.py slide                              # 2048x1024: slide vs whole
    python tools/benchmark.py slide --tta                        # and the multi-scale+flip cost

For each model a train step is forward, loss, backward and an SGD step, timed after warm-up;
the models' steps alternate (A B, B A, ...) so all see the same machine state. The ratio is
vtk / torchvision (below 1.0: vtk is faster); vtk's and torchvision's models hold the same weights.
``train`` times each task's reference architecture (ResNet-50 classification b8 224x224,
DeepLabV3-ResNet-50 b4 360x480, FCOS-ResNet-50-FPN b2 512x512) with what a vtk task switches on
for training (``channels_last``, bf16 autocast as ``precision: bf16-mixed``, ``compile``) against
torchvision's eager fp32 step.
``epochs`` runs whole training epochs of a recipe (its data, loader and model) with each switch:
fp32, channels_last, bf16 autocast, both; the second epoch of each is timed (the first warms up).
``necks`` times FCOS-ResNet-50 with each neck and prints each one's cost relative to FPN.
``grouping`` measures what aspect-ratio grouped batches save on a mixed-orientation set.
``decode`` compares JPEG decoding of large photos (whole vs draft) with the detector's rate.
``onnx`` times onnxruntime against the PyTorch fast path on the same folded network.
``slide`` times DeepLabV3-ResNet-50 inference on one large image, sliding windows against the
whole image at once, with the peak memory of each (CUDA: the allocator's peak; CPU, Linux:
the peak resident memory of a fresh process running that mode once, above what it held before).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vtk.models import FCOS, FPN, ASFFNeck, DeepLabV3Head, FCNHead, ResNet, RFBNeck, Segmenter


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


def fcos_resnet50_fpn_pair(size: int, num_classes: int = 91) -> tuple[nn.Module, nn.Module]:
    """vtk's FCOS-ResNet50-FPN and torchvision's, as ``fcos_resnet50_fpn`` builds it for COCO
    training (frozen BN, stem and layer1 frozen, P6/P7 from P5), images resized to ``size``."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    body = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
        trainable_layers=3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256),
    )  # fmt: skip
    reference = torchvision.models.detection.FCOS(body, num_classes, min_size=size, max_size=size)
    ours = fcos_resnet50(FPN, size, num_classes)
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def fcos_resnet50(neck: Callable[..., nn.Module], size: int, num_classes: int = 91) -> nn.Module:
    """vtk's FCOS on a COCO-style ResNet-50 (frozen BN, frozen stem + stage 1) with ``neck``."""
    from torchvision.ops import FrozenBatchNorm2d

    backbone = ResNet(
        "resnet50", out_indices=(1, 2, 3), norm_layer=FrozenBatchNorm2d, frozen_stages=1
    )
    return FCOS(backbone, num_classes, neck=neck, min_size=size, max_size=size)


def detection_batch(
    batch: int, size: int, device: torch.device, num_classes: int = 91
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Random images with three random boxes each."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = 16 + torch.rand(3, 2, generator=g) * size * 0.35
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, num_classes, (3,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def detection_step(model: nn.Module, optimizer: torch.optim.Optimizer, images, targets) -> None:
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


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


def deeplabv3_resnet50_pair(num_classes: int = 21) -> tuple[nn.Module, nn.Module]:
    """vtk's and torchvision's DeepLabV3-ResNet50 (output stride 8, rates 12/24/36, aux head)."""
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True
    )
    ours = Segmenter(
        ResNet("resnet50", output_stride=8),
        head=partial(DeepLabV3Head, atrous_rates=(12, 24, 36)),
        num_classes=num_classes,
        aux_head=FCNHead,
    )
    ours.load_state_dict(reference.state_dict())
    return ours, reference


#: ``train``'s architectures: (batch, height, width) and a title
TRAIN_SETTINGS = {
    "resnet50": ((8, 224, 224), "ResNet-50 classification"),
    "deeplabv3_resnet50": ((4, 360, 480), "DeepLabV3-ResNet50 (OS 8, aux)"),
    "fcos_resnet50_fpn": ((2, 512, 512), "FCOS-ResNet50-FPN"),
}


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively (CUDA with bf16; a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def _train_pair(arch: str, height: int, width: int) -> tuple[nn.Module, nn.Module]:
    if arch == "deeplabv3_resnet50":
        return deeplabv3_resnet50_pair()
    if arch == "fcos_resnet50_fpn":
        return fcos_resnet50_fpn_pair(height)
    ours, reference, _ = _inference_pair("resnet50", height)
    return ours, reference


def _train_step_for(
    arch: str, model: nn.Module, inputs: tuple, channels_last: bool, bf16: bool | str, device
) -> Callable[[], None]:
    """One SGD step of ``model`` as a vtk task runs it: channels_last weights and images,
    bf16 autocast around forward and loss (Lightning's ``bf16-mixed``), or with ``bf16="fp16"``
    fp16 autocast and a gradient scaler (``16-mixed``, the GPU recipes')."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    fp16 = bf16 == "fp16"
    dtype = torch.float16 if fp16 else torch.bfloat16
    amp = torch.autocast(device.type, dtype=dtype, enabled=bool(bf16))
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if arch == "fcos_resnet50_fpn":
        images, targets = inputs

        def step() -> None:
            with amp:
                losses = model(images, targets)
                loss = sum(losses.values())
            update(loss)

        return step
    x, y = inputs
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with amp:
            out = model(x)
            if arch == "resnet50":
                loss = F.cross_entropy(out.float(), y)
            else:
                loss = F.cross_entropy(out["out"].float(), y, ignore_index=255)
                loss = loss + 0.4 * F.cross_entropy(out["aux"].float(), y, ignore_index=255)
        update(loss)

    return step


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
        ours, reference = _train_pair(arch, h, w)
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
            name: _train_step_for(arch, model, inputs, cl, bf16, device)
            for name, (model, cl, bf16) in variants.items()
        }
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        times = time_alternating(steps, args.steps, args.warmup, sync)
        native = "native bf16" if bf16_ok else "no native bf16"
        _report(
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


def _report(title: str, times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(title)
    for name, t in med.items():
        ratio = "" if name == baseline else f"   ratio {name}/{baseline} = {t / med[baseline]:.3f}"
        print(f"  {name:<14} {t:.3f} s{ratio}")
    return med


def _detection_steps(
    models: dict[str, nn.Module], args: argparse.Namespace
) -> dict[str, Callable[[], None]]:
    device = torch.device(args.device)
    images, targets = detection_batch(args.batch, args.size, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step_for(model: nn.Module) -> Callable[[], None]:
        model.to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

        def step() -> None:
            with amp:
                detection_step(model, optimizer, images, targets)

        return step

    return {name: step_for(m) for name, m in models.items()}


def _setting(args: argparse.Namespace) -> str:
    flags = "".join(
        f", {flag}"
        for flag, on in (("channels_last", args.channels_last), ("bf16", args.bf16))
        if on
    )
    return f"batch {args.batch} x {args.size}^2, {args.device}{flags}, median of {args.steps}"


def benchmark_detection(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    ours, reference = fcos_resnet50_fpn_pair(args.size)
    steps = _detection_steps({"vtk": ours, "torchvision": reference}, args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = time_alternating(steps, args.steps, args.warmup, sync)
    _report(f"FCOS-ResNet50-FPN train step, {_setting(args)}:", times, "torchvision")


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
    _report(f"FCOS-ResNet18-FPN train step, batch {args.batch}, CPU fp32, median of {args.steps}:",
            times, "mixed")  # fmt: skip


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


def benchmark_necks(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    models = {
        "FPN": fcos_resnet50(FPN, args.size),
        "FPN+ASFF": fcos_resnet50(ASFFNeck, args.size),
        "RFB": fcos_resnet50(RFBNeck, args.size),
    }
    params = {k: sum(p.numel() for p in m.backbone.fpn.parameters()) for k, m in models.items()}
    steps = _detection_steps(models, args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = time_alternating(steps, args.steps, args.warmup, sync)
    _report(f"FCOS-ResNet50 train step by neck, {_setting(args)}:", times, "FPN")
    print("  neck parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))


def _inference_pair(arch: str, size: int) -> tuple[nn.Module, nn.Module, str]:
    """vtk's and torchvision's model of each task's reference architecture, same weights."""
    if arch == "deeplabv3_resnet101":
        ours, reference = deeplabv3_resnet101_pair()
        return ours, reference, "DeepLabV3-ResNet101 (OS 8)"
    if arch == "fcos_resnet50_fpn":
        ours, reference = fcos_resnet50_fpn_pair(size)
        return ours, reference, "FCOS-ResNet50-FPN"
    from vtk.models import Classifier

    reference = torchvision.models.resnet50()
    ours = Classifier(ResNet("resnet50"), 1000)
    ours.load_state_dict(
        {
            (f"head.{k}" if k.startswith("fc.") else f"backbone.{k}"): v
            for k, v in reference.state_dict().items()
        }
    )
    return ours, reference, "ResNet-50"


def benchmark_inference(args: argparse.Namespace) -> None:
    """Inference of each task's reference architecture: vtk's fast path (BatchNorm folded,
    channels_last, inference mode: what ``vtk.load`` and ``vtk predict`` run) and vtk eager
    against torchvision eager fp32, with the GFLOP/s each achieves."""
    from torch.utils.flop_counter import FlopCounterMode

    from vtk.models.fuse import fold_batchnorm

    device = torch.device(args.device)
    ours, reference, title = _inference_pair(args.arch, args.size)
    ours, reference = ours.eval(), reference.eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    detector = args.arch == "fcos_resnet50_fpn"
    fold_run = (lambda m, t: m.backbone(t)) if detector else None
    fast, report = fold_batchnorm(ours, x[:1], fold_run)
    fast = fast.to(device, memory_format=torch.channels_last)
    models = {"vtk fast": fast, "vtk eager": ours.to(device), "torchvision": reference.to(device)}
    x = x.to(device)
    inputs = {name: x for name in models}
    if detector:  # a list of images in [0, 1], as detectors take
        images = [t.clamp(0, 1) for t in x.abs()]
        inputs = {name: images for name in models}
    else:
        inputs["vtk fast"] = x.contiguous(memory_format=torch.channels_last)
        if args.channels_last:  # the references in channels_last too
            for name in ("vtk eager", "torchvision"):
                models[name] = models[name].to(memory_format=torch.channels_last)
                inputs[name] = inputs["vtk fast"]
    if args.compile:  # vtk's fast path compiled as vtk.load(..., compile=True) does; the
        # references stay eager (the comparison is with torchvision's eager fp32)
        from vtk.api import compile_for_inference

        compiled = copy.deepcopy(fast)
        if detector:  # as DetectionTask.compile_network: the backbone and neck
            compiled.backbone = compile_for_inference(compiled.backbone)
        else:
            compiled = compile_for_inference(compiled)
        models["vtk fast+compile"] = compiled
        inputs["vtk fast+compile"] = inputs["vtk fast"]
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        reference(inputs["torchvision"])
    flops = counter.get_total_flops()

    def step_for(name: str) -> Callable[[], None]:
        model, inp = models[name], inputs[name]

        def step() -> None:
            with torch.inference_mode(), amp:
                model(inp)

        return step

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = time_alternating({k: step_for(k) for k in models}, args.steps, args.warmup, sync)
    flags = "".join(
        f", {f}" for f, on in (("references channels_last", args.channels_last),
                               ("bf16", args.bf16)) if on
    )  # fmt: skip
    _report(
        f"{title} inference, batch {args.batch} x {args.size}^2, {args.device}{flags}, "
        f"median of {args.steps} ({report['pairs']} BatchNorms folded):",
        times,
        "torchvision",
    )
    for name, ts in times.items():
        print(f"  {name:12s} {flops / statistics.median(ts) / 1e9:.1f} GFLOP/s "
              f"({flops / 1e9:.1f} GFLOP per batch, torchvision's count)")  # fmt: skip


def benchmark_onnx(args: argparse.Namespace) -> None:
    """onnxruntime (CPU) against the PyTorch fast path on the same folded network and inputs:
    what ``vtk export`` writes and ``vtk.load("model.onnx")`` runs, against ``vtk.load(ckpt)``."""
    import tempfile
    import warnings

    import onnxruntime as ort

    from vtk.models.fuse import fold_batchnorm

    if args.arch == "fcos_resnet50_fpn":
        raise SystemExit("onnx: --arch resnet50 or deeplabv3_resnet101")
    ours, _, title = _inference_pair(args.arch, args.size)
    x = torch.randn(args.batch, 3, args.size, args.size)
    fast, _ = fold_batchnorm(ours.eval(), x[:1])
    net = (fast if args.arch == "resnet50" else _OutOnly(fast)).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "m.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), path, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["out"],
                              dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}})  # fmt: skip
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        net = net.eval().to(memory_format=torch.channels_last)  # export restores modes
        xc, xn = x.contiguous(memory_format=torch.channels_last), x.numpy()

        def torch_step() -> None:
            with torch.inference_mode():
                net(xc)

        times = time_alternating({"onnxruntime": lambda: session.run(None, {"image": xn}),
                                  "PyTorch fast": torch_step}, args.steps, args.warmup,
                                 lambda: None)  # fmt: skip
        with torch.inference_mode():
            want = net(xc).numpy()
            diff = float(np.abs(session.run(None, {"image": xn})[0] - want).max())
    _report(f"{title} inference, batch {args.batch} x {args.size}^2, CPU, median of "
            f"{args.steps} (the same folded network; max abs difference {diff:.1e}, "
            f"relative {diff / max(float(np.abs(want).max()), 1e-12):.1e}):",
            times, "PyTorch fast")  # fmt: skip


def benchmark_int8(args: argparse.Namespace) -> None:
    """INT8 (what ``vtk export --int8`` writes: onnxruntime static QDQ, first and last layers in
    fp32) against torchvision's eager fp32 model of the same architecture, and onnxruntime
    fp32, in one process on the same inputs. Speed only: the weights are random and the
    calibration inputs too (``vtk export --int8`` reports the accuracy on real images)."""
    import tempfile
    import warnings

    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vtk.models.fuse import fold_batchnorm
    from vtk.quantize import fp32_and_int8_layers

    if args.arch == "fcos_resnet50_fpn":
        raise SystemExit("int8: detection is not quantised (its graph holds box decoding and NMS)")
    if args.arch == "deeplabv3_resnet101":
        raise SystemExit("int8: --arch resnet50 or deeplabv3_resnet50")
    if args.arch == "deeplabv3_resnet50":
        ours, reference = deeplabv3_resnet50_pair()
        title = "DeepLabV3-ResNet50 (OS 8)"
    else:
        ours, reference, title = _inference_pair(args.arch, args.size)
    x = torch.randn(args.batch, 3, args.size, args.size)
    fast, _ = fold_batchnorm(ours.eval(), x[:1], None if args.arch == "resnet50" else
                             (lambda m, t: m(t)["out"]))  # fmt: skip
    net = (fast if args.arch == "resnet50" else _OutOnly(fast)).eval()
    reference = reference.eval()

    class Reader:
        def __init__(self) -> None:
            self.left = 8

        def get_next(self) -> dict[str, np.ndarray] | None:
            self.left -= 1
            return (
                None
                if self.left < 0
                else {"image": torch.randn(1, 3, args.size, args.size).numpy()}
            )

    with tempfile.TemporaryDirectory() as folder:
        fp32_path, int8_path = str(Path(folder) / "m.onnx"), str(Path(folder) / "q.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), fp32_path, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["out"],
                              dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}})  # fmt: skip
            prepared = str(Path(folder) / "prep.onnx")  # as vtk.quantize: folded, shapes known
            quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
            quantize_static(prepared, int8_path, Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(fp32_and_int8_layers(prepared)))  # fmt: skip
        sessions = {
            name: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            for name, path in (("onnxruntime fp32", fp32_path), ("onnxruntime int8", int8_path))
        }
        xn = x.numpy()

        def torchvision_step() -> None:
            with torch.inference_mode():
                reference(x)

        steps = {name: (lambda s=s: s.run(None, {"image": xn})) for name, s in sessions.items()}
        times = time_alternating({**steps, "torchvision": torchvision_step}, args.steps,
                                 args.warmup, lambda: None)  # fmt: skip
    _report(f"{title} inference, batch {args.batch} x {args.size}^2, CPU, median of {args.steps} "
            "(torchvision eager fp32 against onnxruntime fp32 and INT8 of the folded network):",
            times, "torchvision")  # fmt: skip


class _OutOnly(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def benchmark_eval(args: argparse.Namespace) -> None:
    """COCO mAP of the same synthetic detections: pycocotools against faster-coco-eval."""
    import importlib.util

    from torchmetrics.detection import MeanAveragePrecision

    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _ in range(args.images):
        n = 8
        xy = torch.rand(n, 2, generator=g) * 500
        gt = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 100], 1)
        jitter = gt.repeat(10, 1) + torch.randn(10 * n, 4, generator=g) * 8
        targets.append({"boxes": gt, "labels": torch.randint(0, 80, (n,), generator=g)})
        preds.append(
            {
                "boxes": jitter,
                "scores": torch.rand(10 * n, generator=g),
                "labels": targets[-1]["labels"].repeat(10),
            }
        )
    from vtk.tasks.detection import per_class_ap

    configs = {
        "pycocotools": {},
        "pycocotools + per-class AP/AP50 (vtk)": {"extended_summary": True},
        "pycocotools class_metrics": {"class_metrics": True},
    }
    if importlib.util.find_spec("faster_coco_eval") is not None:
        configs["faster_coco_eval"] = {"backend": "faster_coco_eval"}
    times, results = {}, {}
    for name, kwargs in configs.items():
        metric = MeanAveragePrecision(**kwargs)
        start = time.perf_counter()
        metric.update(preds, targets)
        results[name] = metric.compute()
        times[name] = [time.perf_counter() - start]
    _report(
        f"COCO bbox mAP of {args.images} images x 80 detections, update + compute:",
        times,
        "pycocotools",
    )
    print("  mAP: " + ", ".join(f"{k} {float(v['map']):.6f}" for k, v in results.items()))
    ours = per_class_ap(results["pycocotools + per-class AP/AP50 (vtk)"])["AP"]
    theirs = results["pycocotools class_metrics"]
    diff = max(
        abs(ours[int(c)] - float(v))
        for c, v in zip(theirs["classes"].tolist(), theirs["map_per_class"].tolist())
    )
    print(f"  per-class AP, vtk's vs class_metrics': max abs difference {diff:.2e}")
    if "faster_coco_eval" not in configs:
        print('  faster-coco-eval is not installed: pip install -e ".[fast-eval]"')


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
    cmd = [sys.executable, __file__, "slide", "--_memory_of", mode, "--height", str(args.height),
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
    med = _report(
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "task",
        choices=[
            "train",
            "epochs",
            "segmentation",
            "detection",
            "necks",
            "inference",
            "eval",
            "data",
            "slide",
            "grouping",
            "decode",
            "onnx",
            "int8",
        ],
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="batch (default 2; train: each setting's)")
    parser.add_argument(
        "--size", type=int, help="image side (default 256; detection 384; train: each setting's)"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument(
        "--compile", action="store_true", help="inference, train: torch.compile as vtk does"
    )
    parser.add_argument(
        "--arch",
        default=None,
        choices=[
            "resnet50",
            "deeplabv3_resnet101",
            "deeplabv3_resnet50",
            "fcos_resnet50_fpn",
            "all",
        ],
        help="inference, train: which task's reference architecture (train: default all)",
    )
    parser.add_argument("--images", type=int, default=500, help="eval, grouping: images")
    parser.add_argument("--max_size", type=int, default=1333, help="grouping: longer side cap")
    parser.add_argument("--workers", type=int, default=2, help="data: loader workers")
    parser.add_argument("--recipe", help="data, epochs: a recipe (name or path)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs: timed epochs per switch")
    parser.add_argument("--limit", type=int, help="epochs: training batches per epoch")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--height", type=int, default=1024, help="slide, decode: image height")
    parser.add_argument("--width", type=int, default=2048, help="slide, decode: image width")
    parser.add_argument("--window", type=int, default=769, help="slide: window side")
    parser.add_argument("--stride", type=int, default=513, help="slide: window stride")
    parser.add_argument("--slide_batch", type=int, default=1, help="slide: windows at a time")
    parser.add_argument("--tta", action="store_true", help="slide: also whole + TTA")
    parser.add_argument("--_memory_of", help=argparse.SUPPRESS)
    args, args.overrides = parser.parse_known_args()
    if args.overrides and args.task not in ("data", "epochs"):
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    if args.task == "train":
        args.arch = args.arch or "all"
        if args.arch not in (*TRAIN_SETTINGS, "all"):
            parser.error(f"train --arch: one of {', '.join(TRAIN_SETTINGS)} or all")
    elif args.arch == "all" or (args.arch == "deeplabv3_resnet50" and args.task != "int8"):
        parser.error("--arch deeplabv3_resnet50 / all: for train (and int8) only")
    else:
        args.arch = args.arch or "resnet50"
    if args.batch is None and args.task != "train":
        args.batch = 2
    if args.size is None and args.task != "train":
        args.size = {"segmentation": 256, "inference": 224}.get(args.task, 384)
    if args.channels_last and args.task not in ("segmentation", "inference"):
        parser.error("--channels_last is measured for segmentation and inference only")
    tasks = {
        "train": benchmark_train,
        "epochs": benchmark_epochs,
        "segmentation": benchmark_segmentation,
        "detection": benchmark_detection,
        "necks": benchmark_necks,
        "inference": benchmark_inference,
        "eval": benchmark_eval,
        "data": benchmark_data,
        "slide": benchmark_slide,
        "grouping": benchmark_grouping,
        "decode": benchmark_decode,
        "onnx": benchmark_onnx,
        "int8": benchmark_int8,
    }
    tasks[args.task](args)


if __name__ == "__main__":
    main()
