"""Shift consistency (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019,
§4.1): how often a classifier gives one image the same top-1 class when it is shifted — for
checkpoints trained with and without BlurPool, measured in one run.

    vtk fit demo_classification --trainer.logger.init_args.name plain
    vtk fit demo_classification --model.model.backbone.blur_pool 3 --trainer.logger.init_args.name blur3
    python tools/shift_consistency.py runs/plain/version_0/checkpoints/last.ckpt \\
        runs/blur3/version_0/checkpoints/last.ckpt --images ~/.cache/vtk/demo_classification/val

Every image of ``--images`` (a folder, searched recursively; class folders are not needed) is
normalised as its checkpoint's run did, and every ``crop`` x ``crop`` window of it (offsets 0
to size - crop in both directions) is classified. Reported per checkpoint:

* top-1 of the centre window (against the class folder name, when the images are in one);
* consistency: the paper's measure, P(top-1 of one window = top-1 of another) over ``pairs``
  random pairs of offsets per image (seeded);
* one-pixel agreement: the same for windows one pixel apart on the diagonal.

The first checkpoint is the reference; the others are printed with their difference to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def window_predictions(task, images: list[np.ndarray], crop: int) -> torch.Tensor:
    """Top-1 class of every crop window: (images, offsets_y, offsets_x)."""
    from vtk.data.transforms import eval_transform
    from vtk.spec import InputSpec

    spec = task.input_spec
    normalise = eval_transform(InputSpec(spec.mean, spec.std))
    out = []
    with torch.inference_mode():
        for image in images:
            x = normalise(image=image)["image"]
            h, w = x.shape[-2:]
            windows = torch.stack(
                [
                    x[:, i : i + crop, j : j + crop]
                    for i in range(h - crop + 1)
                    for j in range(w - crop + 1)
                ]
            )
            out.append(task.model(windows).argmax(1).view(h - crop + 1, w - crop + 1))
    return torch.stack(out)


def measure(predictions: torch.Tensor, labels: list[int] | None, pairs: int, seed: int) -> dict:
    n, oy, ox = predictions.shape
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, oy * ox, (n, pairs), generator=g)
    b = torch.randint(0, oy * ox, (n, pairs), generator=g)
    flat = predictions.view(n, -1)
    consistency = (flat.gather(1, a) == flat.gather(1, b)).float().mean().item()
    diag = torch.arange(min(oy, ox) - 1)
    one_pixel = (predictions[:, diag, diag] == predictions[:, diag + 1, diag + 1]).float().mean()
    result = {"consistency": consistency, "one_pixel": one_pixel.item()}
    if labels is not None:
        centre = predictions[:, oy // 2, ox // 2]
        result["top1"] = (centre == torch.tensor(labels)).float().mean().item()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", help="the reference first")
    parser.add_argument("--images", required=True, help="a folder of images (recursive)")
    parser.add_argument("--crop", type=int, default=56, help="window side (default 56)")
    parser.add_argument("--pairs", type=int, default=5, help="random offset pairs per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import vtk
    from vtk.data.io import is_image_file, read_image

    files = sorted(p for p in Path(args.images).expanduser().rglob("*") if is_image_file(p))
    if not files:
        raise SystemExit(f"shift_consistency: error: no images in {args.images}")
    images = [read_image(p) for p in files]
    results = []
    for ckpt in args.checkpoints:
        task = vtk.load(ckpt).task
        names = list(task.class_names)
        labels = (
            [names.index(p.parent.name) for p in files]
            if all(p.parent.name in names for p in files)
            else None
        )
        predictions = window_predictions(task, images, args.crop)
        results.append((Path(ckpt), measure(predictions, labels, args.pairs, args.seed)))
    side = images[0].shape[0]
    print(
        f"{len(files)} images, {args.crop}x{args.crop} windows of {side} px images "
        f"({side - args.crop + 1}^2 offsets), {args.pairs} random pairs per image:"
    )
    reference = results[0][1]
    for path, r in results:
        diff = (
            ""
            if r is reference
            else "   vs the first: " + ", ".join(f"{k} {r[k] - reference[k]:+.3f}" for k in r)
        )
        top1 = f"top-1 {r['top1']:.3f}, " if "top1" in r else ""
        print(
            f"  {path}: {top1}consistency {r['consistency']:.3f}, "
            f"one-pixel agreement {r['one_pixel']:.3f}{diff}"
        )


if __name__ == "__main__":
    sys.exit(main())
