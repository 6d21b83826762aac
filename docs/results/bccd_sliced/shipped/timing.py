"""Seconds per 1280x960 mosaic with vtk.load(...).predict: the whole image, 480 px tiles + NMS,
480 px tiles + NMM (bccd_fcos_resnet10, fp32, 2 threads), the three alternating, median of the
18 mosaics twice. Run from the folder holding mosaics/ (tools/mosaic_coco.py)."""

import statistics
import time
from pathlib import Path

import torch

import vtk

torch.set_num_threads(2)
images = sorted(Path("mosaics/images").glob("*.jpg"))
modes = {
    "whole": {},
    "nms": {"slice_size": 480, "slice_merge": "nms"},
    "nmm": {"slice_size": 480, "slice_merge": "nmm"},
}
models = {k: vtk.load("bccd_fcos_resnet10", device="cpu", **v) for k, v in modes.items()}
for model in models.values():
    model.predict(str(images[0]))  # warm-up
times: dict[str, list[float]] = {k: [] for k in modes}
for _ in range(2):
    for path in images:
        for k, model in models.items():
            start = time.perf_counter()
            model.predict(str(path))
            times[k].append(time.perf_counter() - start)
base = statistics.median(times["whole"])
for k, v in times.items():
    print(f"{k}: {statistics.median(v):.2f} s / image, ratio {statistics.median(v) / base:.1f}")
