"""Plot a run's CSV metrics: the training losses by step and the validation metrics by epoch.

    python tools/plot_logs.py runs/demo_detection/version_0                 # -> .../metrics.png
    python tools/plot_logs.py runs/demo_detection/version_0/metrics.csv --out curves.png
    python tools/plot_logs.py RUN --keys "val/mIoU,val/acc_*" --by_epoch   # chosen metrics;
                                                  # training losses averaged per epoch

Reads the ``metrics.csv`` that the recipes' CSVLogger writes (matplotlib comes with vtk).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path


def read_metrics(path: Path, by_epoch: bool = False) -> dict[str, list[tuple[float, float]]]:
    """``{metric: [(step or epoch, value), ...]}``: ``train/*`` by step, the rest by epoch;
    ``by_epoch``: everything by epochs completed, the training losses as their epoch's mean."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with path.open() as f:
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


def plot(
    series: dict[str, list[tuple[float, float]]], out: Path, title: str, by_epoch: bool = False
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = sorted(k for k in series if k.startswith("train/") and "loss" in k)
    metrics = sorted(
        k
        for k in series
        if not k.startswith("train/")
        and "loss" not in k
        and any(v != -1 for _, v in series[k])  # COCO's -1: no object of that size
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in losses:
        xs, ys = zip(*series[key])
        axes[0].plot(xs, ys, label=key, linewidth=1)
    axes[0].set(xlabel="epoch" if by_epoch else "step", ylabel="loss", title="training losses")
    for key in metrics:
        xs, ys = zip(*series[key])
        axes[1].plot(xs, ys, marker="o", label=key)
    axes[1].set(xlabel="epoch", title="validation")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a run folder (runs/<recipe>/version_N) or its metrics.csv")
    parser.add_argument("--out", help="the PNG to write (default: metrics.png beside the CSV)")
    parser.add_argument("--keys", help="metrics to plot: comma-separated globs (default all)")
    parser.add_argument(
        "--by_epoch", action="store_true", help="training losses as their mean per epoch"
    )
    args = parser.parse_args(argv)
    path = Path(args.run)
    csv_path = path / "metrics.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise SystemExit(f"plot_logs: {csv_path} does not exist; give a run folder or its CSV.")
    series = select(read_metrics(csv_path, args.by_epoch), args.keys)
    if not series:
        raise SystemExit(f"plot_logs: {csv_path} holds no metric values yet.")
    out = Path(args.out) if args.out else csv_path.with_suffix(".png")
    plot(series, out, str(csv_path.parent), args.by_epoch)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
