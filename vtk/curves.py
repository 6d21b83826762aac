"""A run's curves from its CSV log: training losses by step, the learning rate, and the
validation metrics by epoch. ``vtk fit`` writes them to ``curves.png`` in the run folder at each
validation and at the end; ``tools/plot_logs.py`` draws any run or chosen metrics."""

from __future__ import annotations

import csv
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path


def read_metrics(path: Path, by_epoch: bool = False) -> dict[str, list[tuple[float, float]]]:
    """``{metric: [(step or epoch, value), ...]}``: ``train/*`` by step, the rest by epoch;
    ``by_epoch``: everything by epochs completed, the training losses as their epoch's mean."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with Path(path).open() as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or not value:
                    continue
                x = row["step"] if key.startswith("train/") and not by_epoch else row["epoch"]
                series[key].append((float(x), float(value)))
    if by_epoch:  # x: epochs completed, for the losses (their mean) and the validations alike
        for key in list(series):
            epochs: dict[float, list[float]] = defaultdict(list)
            for epoch, value in series[key]:
                epochs[epoch].append(value)
            series[key] = [(e + 1, sum(v) / len(v)) for e, v in sorted(epochs.items())]
    return dict(series)


def select(series: dict[str, list], patterns: str | None) -> dict[str, list]:
    """The metrics matching any of the comma-separated glob ``patterns`` (all when None); the
    training losses are always kept."""
    if not patterns:
        return series
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return {
        k: v
        for k, v in series.items()
        if (k.startswith("train/") and "loss" in k) or any(fnmatch(k, p) for p in wanted)
    }


def main_metrics(series: dict[str, list]) -> dict[str, list]:
    """The training losses, the learning rates and the run's headline validation metrics
    (``val/mIoU``, ``val/AP``, ``val/acc``; not the per-class ``val/IoU/<class>``)."""
    return {
        k: v
        for k, v in series.items()
        if k.startswith("train/") or (k.startswith("val/") and k.count("/") == 1)
    }


def plot(
    series: dict[str, list[tuple[float, float]]], out: Path, title: str, by_epoch: bool = False
) -> None:
    """Training losses, learning rate (when logged) and validation metrics, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = sorted(k for k in series if k.startswith("train/") and "loss" in k)
    rates = sorted(k for k in series if k.startswith("train/") and k.split("/")[-1][:2] == "lr")
    metrics = sorted(
        k
        for k in series
        if not k.startswith("train/")
        and "loss" not in k
        and any(v != -1 for _, v in series[k])  # COCO's -1: no object of that size
    )
    panels = 3 if rates else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    for key in losses:
        xs, ys = zip(*series[key])
        axes[0].plot(xs, ys, label=key, linewidth=1)
    axes[0].set(xlabel="epoch" if by_epoch else "step", ylabel="loss", title="training losses")
    for key in metrics:
        xs, ys = zip(*series[key])
        axes[1].plot(xs, ys, marker="o", label=key)
    axes[1].set(xlabel="epoch", title="validation")
    for key in rates:
        xs, ys = zip(*series[key])
        axes[2].plot(xs, ys, label=key, linewidth=1)
    if rates:
        axes[2].set(xlabel="epoch" if by_epoch else "step", title="learning rate")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_curves(run: Path, out: Path | None = None) -> Path | None:
    """``run/curves.png`` from ``run/metrics.csv`` (the main metrics only); None when the log
    holds no value yet."""
    run = Path(run)
    csv_path = run / "metrics.csv"
    if not csv_path.is_file():
        return None
    series = main_metrics(read_metrics(csv_path))
    if not series:
        return None
    out = out or run / "curves.png"
    plot(series, out, str(run))
    return out
