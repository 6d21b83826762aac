"""The drawings of predictions: label maps with their legend, and the PR-curve figure's title."""

from __future__ import annotations

import numpy as np
import torch

from vtk.drawing import colours, draw_label_map


def test_a_label_map_is_drawn_with_a_legend_of_the_classes_present() -> None:
    image = torch.full((3, 60, 80), 128, dtype=torch.uint8)
    labels = torch.zeros(60, 80, dtype=torch.int64)
    labels[40:, 40:] = 2  # only class 2 of 0..3 is present
    plain = draw_label_map(image, labels, 4)
    named = draw_label_map(image, labels, 4, class_names=["bg", "cat", "dog", "cow"])
    assert torch.equal(plain[:, 50, 70], named[:, 50, 70])  # the region itself: unchanged
    corner = named[:, :14, :14].permute(1, 2, 0).reshape(-1, 3).tolist()
    assert list(colours(4)[2]) in corner  # the swatch of "dog" in the legend
    assert list(colours(4)[1]) not in corner  # "cat" is not in the image: not in the legend
    assert not torch.equal(plain[:, :14, :40], named[:, :14, :40])
    nothing = torch.zeros(60, 80, dtype=torch.int64)
    assert torch.equal(draw_label_map(image, nothing, 4, class_names=["a"] * 4), image)


def test_the_pr_curve_title_fits_the_figure(tmp_path) -> None:
    from vtk.reports import pr_figure

    recall = np.linspace(0, 1, 101)
    fig = pr_figure(np.tile(np.linspace(1, 0, 101)[:, None], (1, 2)), recall, ["a", "b"])
    fig.canvas.draw()
    title = fig.axes[0].title.get_window_extent()
    figure = fig.bbox
    assert title.x0 >= figure.x0 and title.x1 <= figure.x1, (title, figure)
