"""Plot a run's CSV metrics: the training losses by step and the validation metrics by epoch.

    python tools/plot_logs.py runs/demo_detection/version_0                 # -> .../metrics.png
    python tools/plot_logs.py runs/demo_detection/version_0/metrics.csv --out curves.png
    python tools/plot_logs.py RUN --keys "val/mIoU,val/acc_*" --by_epoch   # chosen metrics;
                                                  # training losses averaged per epoch

Reads the ``metrics.csv`` that the recipes' CSVLogger writes (matplotlib comes with vtk);
``vtk fit`` itself keeps ``curves.png`` (losses, learning rate, headline metrics) in the run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vtk.curves import plot, read_metrics, select

__all__ = ["main", "plot", "read_metrics", "select"]


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
