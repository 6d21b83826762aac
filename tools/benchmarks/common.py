"""What the benchmarks share: vtk/torchvision model pairs with the same weights, train steps,
alternating timing and the ratio report."""

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vtk.models import FCOS, FPN, DeepLabV3Head, FCNHead, ResNet, Segmenter


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


def train_pair(arch: str, height: int, width: int) -> tuple[nn.Module, nn.Module]:
    if arch == "deeplabv3_resnet50":
        return deeplabv3_resnet50_pair()
    if arch == "fcos_resnet50_fpn":
        return fcos_resnet50_fpn_pair(height)
    ours, reference, _ = inference_pair("resnet50", height)
    return ours, reference


def train_step_for(
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


def print_ratios(title: str, times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(title)
    for name, t in med.items():
        ratio = "" if name == baseline else f"   ratio {name}/{baseline} = {t / med[baseline]:.3f}"
        print(f"  {name:<14} {t:.3f} s{ratio}")
    return med


def detection_steps(
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


def setting_name(args: argparse.Namespace) -> str:
    flags = "".join(
        f", {flag}"
        for flag, on in (("channels_last", args.channels_last), ("bf16", args.bf16))
        if on
    )
    return f"batch {args.batch} x {args.size}^2, {args.device}{flags}, median of {args.steps}"


def inference_pair(arch: str, size: int) -> tuple[nn.Module, nn.Module, str]:
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
