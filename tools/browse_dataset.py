"""See what the model sees: a grid of augmented training samples of a recipe, with their
boxes, masks or class names drawn.

    python tools/browse_dataset.py recipes/demo_detection.yaml                  # -> browse.png
    python tools/browse_dataset.py recipes/demo_segmentation.yaml --n 8 --out seg.png
    python tools/browse_dataset.py recipes/deeplab_resnet101_aspp.yaml --data.root data/VOC2012

Builds the recipe's DataModule (any ``--data.KEY VALUE`` override as for ``vtk``), takes ``n``
training samples through the training augmentation, undoes the normalisation and draws them.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torchvision.utils import draw_bounding_boxes, make_grid

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from vtk.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vtk.drawing import colours, draw_classes, draw_label_map


def _uint8(image: torch.Tensor, normalised: bool) -> torch.Tensor:
    x = image.float()
    if normalised:
        x = (
            x * torch.tensor(IMAGENET_STD)[:, None, None]
            + torch.tensor(IMAGENET_MEAN)[:, None, None]
        )
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _tile(image: torch.Tensor, size: int) -> torch.Tensor:
    """Letterboxed into a ``size`` x ``size`` tile."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    scale = size / max(pil.width, pil.height)
    pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
    tile = Image.new("RGB", (size, size))
    tile.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
    return torch.from_numpy(np.array(tile)).permute(2, 0, 1)


def draw_sample(item: dict, class_names: list[str], num_classes: int) -> torch.Tensor:
    if "target" in item:  # detection: images in [0, 1], boxes in their pixels
        image = _uint8(item["image"], normalised=False)
        labels = item["target"]["labels"].tolist()
        if not labels:
            return image
        palette = colours(num_classes + 1)
        return draw_bounding_boxes(
            image, item["target"]["boxes"].float(), [class_names[i] for i in labels],
            [palette[i + 1] for i in labels], width=2,
        )  # fmt: skip
    image = _uint8(item["image"], normalised=True)
    if "mask" in item:
        return draw_label_map(image, item["mask"], num_classes)
    return draw_classes(image, [class_names[item["label"]]], [1.0])


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
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    recipe = Path(args.recipe)
    if not recipe.is_file():
        raise SystemExit(f"browse_dataset: recipe {recipe} does not exist.")
    data = copy.deepcopy(yaml.safe_load(recipe.read_text())["data"])
    data_parser = ArgumentParser(exit_on_error=False)
    data_parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    try:
        config = data_parser.parse_args(["--data", yaml.safe_dump(data), *overrides])
        datamodule = data_parser.instantiate_classes(config).data
        datamodule.setup("fit")
    except Exception as e:  # a clear line, as `vtk` prints, for missing data and bad keys
        from vtk.cli import _find_user_error, _user_message

        user = _find_user_error(e)
        raise SystemExit(f"browse_dataset: error: {_user_message(user) if user else e}") from None
    dataset = datamodule.datasets["train"]
    torch.manual_seed(args.seed)
    indices = torch.randperm(len(dataset))[: args.n].tolist()
    names = list(getattr(datamodule, "class_names", None) or [])
    num_classes = int(getattr(datamodule, "num_classes", len(names)))
    names = names or [str(i) for i in range(num_classes)]
    tiles = [
        _tile(draw_sample(item, names, num_classes), args.tile)
        for item in (dataset[i] for i in indices)
        if item is not None
    ]
    grid = make_grid(tiles, nrow=min(8, len(tiles)), padding=2)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(args.out)
    print(f"wrote {args.out}: {len(tiles)} augmented training samples of {recipe}")


if __name__ == "__main__":
    sys.exit(main())
