"""Inference and deployment: ``inference``, ``onnx``, ``int8`` and ``eval`` (the COCO
evaluators)."""

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.common import (
    deeplabv3_resnet50_pair,
    inference_pair,
    print_ratios,
    time_alternating,
)


def benchmark_inference(args: argparse.Namespace) -> None:
    """Inference of each task's reference architecture: vtk's fast path (BatchNorm folded,
    channels_last, inference mode: what ``vtk.load`` and ``vtk predict`` run) and vtk eager
    against torchvision eager fp32, with the GFLOP/s each achieves."""
    from torch.utils.flop_counter import FlopCounterMode

    from vtk.models.fuse import fold_batchnorm

    device = torch.device(args.device)
    ours, reference, title = inference_pair(args.arch, args.size)
    ours, reference = ours.eval(), reference.eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    detector = args.arch == "fcos_resnet50_fpn"
    fold_run = (lambda m, t: m.backbone(t)) if detector else None
    fast, folded = fold_batchnorm(ours, x[:1], fold_run)
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
    print_ratios(
        f"{title} inference, batch {args.batch} x {args.size}^2, {args.device}{flags}, "
        f"median of {args.steps} ({folded['pairs']} BatchNorms folded):",
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
    ours, _, title = inference_pair(args.arch, args.size)
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
    print_ratios(f"{title} inference, batch {args.batch} x {args.size}^2, CPU, median of "
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
        ours, reference, title = inference_pair(args.arch, args.size)
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
    print_ratios(f"{title} inference, batch {args.batch} x {args.size}^2, CPU, median of {args.steps} "
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
    print_ratios(
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
