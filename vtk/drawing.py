"""Predictions and samples drawn on their images, with torchvision's drawing utilities (no
dependency on the rest of vtk, so data, tasks and tools can all draw).

Detections: ``torchvision.utils.draw_bounding_boxes`` with "class score" labels; label maps:
``draw_segmentation_masks`` in VOC's colours; classes: a banner with the top classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

#: detections below this score are written to the results but not drawn
DRAW_SCORE = 0.5


def voc_palette(n: int = 256) -> list[int]:
    """Pascal VOC's colour map (the "bitget" palette), flattened for ``Image.putpalette``."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def colours(n: int) -> list[tuple[int, int, int]]:
    """VOC's colour of each class index (0 is black: background)."""
    flat = voc_palette(max(n, 1))
    return [tuple(flat[3 * i : 3 * i + 3]) for i in range(n)]  # type: ignore[misc]


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: Sequence[int],
    scores: Sequence[float],
    names: Sequence[str],
    min_score: float = DRAW_SCORE,
) -> Tensor:
    keep = [i for i, s in enumerate(scores) if s >= min_score]
    if not keep:
        return image
    palette = colours(len(names) + 1)
    return draw_bounding_boxes(
        image,
        boxes[keep].float(),
        labels=[f"{names[labels[i]]} {scores[i]:.2f}" for i in keep],
        colors=[palette[labels[i] + 1] for i in keep],  # + 1: VOC's first colour is black
        width=max(1, round(min(image.shape[1:]) / 200)),
    )


def draw_label_map(
    image: Tensor,
    labels: Tensor,
    num_classes: int,
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> Tensor:
    """Class regions over the image; class 0 (background) is left clear. With ``class_names``,
    a legend in the top-left corner: the colour and name of each class drawn."""
    present = [c for c in torch.unique(labels).tolist() if 0 < c < num_classes]
    if not present:
        return image
    masks = torch.stack([labels == c for c in present])
    palette = colours(num_classes)
    drawn = draw_segmentation_masks(image, masks, alpha, [palette[c] for c in present])
    if not class_names:
        return drawn
    return draw_legend(drawn, [(str(class_names[c]), palette[c]) for c in present])


def draw_legend(image: Tensor, entries: Sequence[tuple[str, tuple[int, int, int]]]) -> Tensor:
    """A colour swatch and a name per entry, on a dark box in the top-left corner."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    line = draw.textbbox((0, 0), "Ag")[3] + 4
    width = max(draw.textbbox((0, 0), name)[2] for name, _ in entries) + line + 8
    draw.rectangle((0, 0, width, line * len(entries) + 4), fill=(0, 0, 0))
    for i, (name, colour) in enumerate(entries):
        y = 2 + i * line
        draw.rectangle((3, y + 1, 3 + line - 4, y + line - 3), fill=tuple(colour))
        draw.text((line + 4, y), name, fill=(255, 255, 255))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def draw_classes(image: Tensor, names: Sequence[str], scores: Sequence[float]) -> Tensor:
    """A banner with the top classes and their scores at the top of the image."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    text = ", ".join(f"{n} {s:.2f}" for n, s in zip(names, scores))
    box = draw.textbbox((2, 2), text)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 2), text, fill=(255, 255, 255))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)


def save(image: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
