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
    python tools/benchmark.py stream --workers 1                 # loader: files vs LitData stream
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

import argparse
import sys
from pathlib import Path

import torch

# the subcommands live in tools/benchmarks/, beside this file (not an installed package)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.common import TRAIN_SETTINGS
from benchmarks.data import benchmark_data, benchmark_decode, benchmark_stream
from benchmarks.deploy import (
    benchmark_eval,
    benchmark_inference,
    benchmark_int8,
    benchmark_onnx,
)
from benchmarks.slide import benchmark_slide
from benchmarks.training import (
    benchmark_detection,
    benchmark_epochs,
    benchmark_grouping,
    benchmark_necks,
    benchmark_segmentation,
    benchmark_train,
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
            "stream",
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
    parser.add_argument("--recipe", help="data, epochs, stream: a recipe (name or path)")
    parser.add_argument("--stream", help="stream: an existing stream (default: written first)")
    parser.add_argument("--rounds", type=int, default=3, help="stream: alternating rounds")
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
    if args.overrides and args.task not in ("data", "epochs", "stream"):
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
        "stream": benchmark_stream,
        "slide": benchmark_slide,
        "grouping": benchmark_grouping,
        "decode": benchmark_decode,
        "onnx": benchmark_onnx,
        "int8": benchmark_int8,
    }
    tasks[args.task](args)


if __name__ == "__main__":
    main()
