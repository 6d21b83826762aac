"""Result files that ``vtk test`` writes beside its metrics: confusion matrices and
precision-recall curves, as CSV and PNG (matplotlib, a dependency of vtk)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vtk")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no window: works on a server without a display
    import matplotlib.pyplot as plt

    return plt


def _write(folder: Path, name: str, header: list[str], rows: list[list[Any]], fig: Any) -> None:
    """``<name>.csv`` and ``<name>.png`` (``fig``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    fig.savefig(folder / f"{name}.png", dpi=100)
    _pyplot().close(fig)
    log.info("wrote %s and %s.png", path, name)


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], unit: str = "pixels") -> Any:
    """The confusion matrix drawn (rows normalised to 1), each cell labelled with its count, or
    with its row share when counts run past four digits (pixel counts; the CSV has them),."""
    plt = _pyplot()
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * n + 2), max(3.5, 0.4 * n + 1.5)))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    counts = matrix.max() < 10_000
    if n <= 30:  # the labels, where they fit
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                text = str(int(v)) if counts else f"{rows[i, j]:.2f}".lstrip("0")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, label=f"share of the true class's {unit}")
    fig.tight_layout()
    return fig


def write_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], folder: Path, unit: str = "pixels"
) -> None:
    """``confusion_matrix.csv`` (rows: true class, columns: predicted, counts of ``unit``)
    and ``confusion_matrix.png`` (:func:`confusion_figure`)."""
    rows = [[name, *(int(v) for v in row)] for name, row in zip(class_names, matrix)]
    _write(folder, "confusion_matrix", ["true \\ predicted", *class_names], rows,
           confusion_figure(matrix, class_names, unit))  # fmt: skip


def pr_figure(
    precision: np.ndarray, recall_thresholds: Sequence[float], class_names: Sequence[str],
    iou: float = 0.5,
) -> Any:  # fmt: skip
    """Each class's precision-recall curve (``precision``: ``(R, K)``, -1 where COCOeval has
    none), its AP at this IoU in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, name in enumerate(class_names):
        p = precision[:, k]
        if (p > -1).any():
            ax.plot(recall_thresholds, np.where(p > -1, p, np.nan),
                    label=f"{name} {p[p > -1].mean():.3f}")  # fmt: skip
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"precision-recall at IoU {iou:g}\n(COCOeval, 101 points; AP in the legend)",
                 fontsize=10)  # fmt: skip
    if len(class_names) <= 20:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def write_pr_curves(
    precision: np.ndarray,
    recall_thresholds: Sequence[float],
    class_names: Sequence[str],
    folder: Path,
    iou: float = 0.5,
) -> None:
    """``pr_curves.csv`` (recall, then each class's precision; -1 where COCOeval has none) and,
    and ``pr_curves.png`` (:func:`pr_figure`).

    ``precision``: ``(R, K)``, COCOeval's interpolated precision at the recall thresholds for
    one IoU threshold, all areas, the largest max-detections setting."""
    rows = [
        [f"{r:.2f}", *(f"{v:.6f}" for v in row)] for r, row in zip(recall_thresholds, precision)
    ]
    _write(folder, "pr_curves", ["recall", *class_names], rows,
           pr_figure(precision, recall_thresholds, class_names, iou))  # fmt: skip
