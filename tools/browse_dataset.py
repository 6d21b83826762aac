"""See what the model sees: a grid of augmented training samples of a recipe, with their
boxes, masks or class names drawn.

    python tools/browse_dataset.py demo_detection                  # -> browse.png
    python tools/browse_dataset.py demo_segmentation --n 8 --out seg.png
    python tools/browse_dataset.py deeplab_resnet101_aspp --data.root data/VOC2012

Builds the recipe's DataModule (a recipe path or installed name; any ``--data.KEY VALUE``
override as for ``vtk``), takes ``n`` training samples through the training augmentation and
draws each as its DataModule draws a sample (normalisation undone; boxes, masks or class).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


def _tile(image: torch.Tensor, size: int) -> torch.Tensor:
    """Letterboxed into a ``size`` x ``size`` tile."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    scale = size / max(pil.width, pil.height)
    pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
    tile = Image.new("RGB", (size, size))
    tile.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
    return torch.from_numpy(np.array(tile)).permute(2, 0, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe")
    parser.add_argument("--n", type=int, default=16, help="samples in the grid")
    parser.add_argument("--tile", type=int, default=192, help="pixels per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="browse.png")
    args, overrides = parser.parse_known_args(argv)
    from vtk.errors import find_user_error, user_message
    from vtk.recipe import Recipe

    try:
        recipe = Recipe.load(args.recipe, overrides, weights=False)
        datamodule = recipe.datamodule()
        datamodule.setup("fit")
    except Exception as e:  # a clear line, as `vtk` prints, for missing data and bad keys
        user = find_user_error(e)
        raise SystemExit(f"browse_dataset: error: {user_message(user) if user else e}") from None
    dataset = datamodule.datasets["train"]
    torch.manual_seed(args.seed)
    indices = torch.randperm(len(dataset))[: args.n].tolist()
    tiles = [
        _tile(datamodule.draw_sample(item), args.tile)
        for item in (dataset[i] for i in indices)
        if item is not None
    ]
    grid = make_grid(tiles, nrow=min(8, len(tiles)), padding=2)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(args.out)
    print(f"wrote {args.out}: {len(tiles)} augmented training samples of {recipe.path}")


if __name__ == "__main__":
    sys.exit(main())
