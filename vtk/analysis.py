"""What a recipe's network is: per backbone stage its output stride, channels, parameters,
MACs at an input size and theoretical receptive field, then the neck and head; and, with the
recipe's data, how the last stage's receptive field compares with the objects' sizes.

    vtk analyze recipes/resnet50_imagenet.yaml --size 224
    vtk analyze recipes/demo_detection.yaml --data

The receptive field is measured, not looked up: a float64 copy of the backbone with every
weight positive, BatchNorm as the identity and max-pooling as average pooling (so that no
position is left out) is differentiated at the centre of each stage's output; the rows of the
input that get a non-zero gradient are that stage's theoretical receptive field (Araujo et al.,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019). Deformable convs
are measured at zero offset. A module that pools over the whole map (SE, GC, non-local, ASPP's
image pooling) makes the field global; it is then reported as the whole input.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vtk.errors import ConfigError
from vtk.models.backbones.base import Backbone
from vtk.models.layers import DeformConv2d


@dataclass
class StageRow:
    name: str
    stride: int | None
    channels: int | None
    params: int
    macs: int
    receptive_field: int | None  # pixels at the input; None: not measured
    is_global: bool = False


def _no_weights(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: None if k == "weights" else _no_weights(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_no_weights(v) for v in node]
    return node


def read_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        known = sorted(str(p) for p in Path("recipes").glob("*.yaml"))
        hint = f" Recipes here: {', '.join(known)}." if known else ""
        raise ConfigError(f"recipe {path} does not exist.{hint}")
    config = yaml.safe_load(path.read_text())
    try:
        config["model"]["init_args"]["model"]["class_path"]
    except (KeyError, TypeError):
        raise ConfigError(
            f"{path} is not a vtk recipe: it has no model.init_args.model.class_path."
        ) from None
    return config


def build_model(config: dict[str, Any], num_classes: int) -> nn.Module:
    """The recipe's network (no weights loaded) for ``num_classes`` classes."""
    from jsonargparse import ArgumentParser

    spec = _no_weights(copy.deepcopy(config["model"]["init_args"]["model"]))
    spec.setdefault("init_args", {})["num_classes"] = num_classes
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "model", required=True)
    parsed = parser.parse_object({"model": spec})
    return parser.instantiate_classes(parsed).model


def find_backbone(model: nn.Module) -> Backbone:
    for m in model.modules():
        if isinstance(m, Backbone):
            return m
    raise ConfigError(f"{type(model).__name__} has no vtk backbone to analyse.")


def _all_stages(backbone: Backbone) -> Backbone:
    """A copy of ``backbone`` that builds and returns every stage (recipes may request fewer)."""
    full = copy.deepcopy(backbone)
    if len(full.feature_info) == len(full.stage_modules()) - 1:
        return full
    raise ConfigError(
        "the recipe's backbone builds only some of its stages; analyse it with out_indices "
        "covering every stage."
    )


def _linearised(backbone: Backbone) -> nn.Module:
    net = copy.deepcopy(backbone).double().eval()
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(
                    module,
                    child_name,
                    nn.AvgPool2d(
                        child.kernel_size, child.stride, child.padding, child.ceil_mode, True
                    ),
                )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, DeformConv2d):
                m.offset.weight.zero_()
                if m.offset.bias is not None:
                    m.offset.bias.zero_()
        offsets = {id(m.offset.weight) for m in net.modules() if isinstance(m, DeformConv2d)}
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) or type(m).__name__.startswith(
                "FrozenBatchNorm"
            ):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
            elif isinstance(m, nn.Conv2d | nn.Linear | DeformConv2d):
                if id(m.weight) not in offsets:
                    m.weight.fill_(1.0 / max(1, m.weight[0].numel()))
                if m.bias is not None and id(m.weight) not in offsets:
                    m.bias.zero_()
    return net


def receptive_fields(backbone: Backbone, height: int = 1024) -> list[tuple[int, bool]]:
    """Per output stage of ``backbone``: (receptive field in input pixels, whether global).

    Measured on a ``height x 64`` input along its height (the field of a square kernel stack
    is the same along both axes); a field that reaches both borders is reported as global.
    """
    net = _linearised(backbone)
    x = torch.full((1, 3, height, 64), 1.0, dtype=torch.float64, requires_grad=True)
    outputs = net(x)
    fields = []
    for out in outputs:
        (grad,) = torch.autograd.grad(
            out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum(), x, retain_graph=True
        )
        rows = torch.nonzero(grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
        first, last = int(rows.min()), int(rows.max())
        fields.append((last - first + 1, first == 0 and last == height - 1))
    return fields


def _macs(module: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Multiply-accumulates of ``module(x)`` in total and per sub-module name."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    per_module = {
        name: sum(counts.values()) // 2 for name, counts in counter.get_flop_counts().items()
    }
    return counter.get_total_flops() // 2, per_module


def stage_rows(backbone: Backbone, size: int, rf_height: int = 1024) -> list[StageRow]:
    full = _all_stages(backbone).eval()
    x = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        full(x)
    counts = counter.get_flop_counts()
    names = {id(m): n for n, m in full.named_modules()}
    root = type(full).__name__
    fields = receptive_fields(full, rf_height)
    rows = []
    for k, group in enumerate(full.stage_modules()):
        params = sum(p.numel() for m in group for p in m.parameters())
        macs = 0
        for m in group:
            key = f"{root}.{names[id(m)]}" if names[id(m)] else root
            macs += sum(counts.get(key, {}).values()) // 2
        if k == 0:
            rows.append(StageRow("stem", None, None, params, macs, None))
        else:
            info = full.feature_info[k - 1]
            rf, is_global = fields[k - 1]
            rows.append(
                StageRow(f"stage {k - 1}", info.stride, info.channels, params, macs, rf, is_global)
            )
    if full.stn is not None:
        params = sum(p.numel() for p in full.stn.parameters())
        rows.insert(0, StageRow("stn", None, None, params, _macs(full.stn, x)[0], None))
    return rows


# -- objects in the data ----------------------------------------------------------------------
def coco_object_sizes(annotations: str | Path, min_size: int, max_size: int) -> np.ndarray:
    """Longer box side of every non-crowd object, in pixels after the detector's resize."""
    data = json.loads(Path(annotations).read_text())
    scale = {}
    for im in data["images"]:
        h, w = im.get("height"), im.get("width")
        if h and w:
            s = min_size / min(h, w)
            scale[im["id"]] = min(s, max_size / max(h, w))
    sides = [
        max(a["bbox"][2], a["bbox"][3]) * scale.get(a["image_id"], 1.0)
        for a in data["annotations"]
        if not a.get("iscrowd", 0)
    ]
    return np.asarray(sides, dtype=np.float64)


def mask_object_sizes(masks: list[np.ndarray], ignore: int = 255) -> np.ndarray:
    """Longer side of the bounding box of each class region (background 0 left out)."""
    sides = []
    for mask in masks:
        for c in np.unique(mask):
            if c in (0, ignore):
                continue
            ys, xs = np.nonzero(mask == c)
            sides.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    return np.asarray(sides, dtype=np.float64)


def compare(field: int, is_global: bool, sides: np.ndarray, what: str) -> str:
    """One paragraph: the last stage's receptive field against the objects' sizes."""
    if sides.size == 0:
        return f"no objects found in {what}."
    largest, p95 = float(sides.max()), float(np.percentile(sides, 95))
    head = (
        f"{sides.size} objects in {what}: longer side median {np.median(sides):.0f} px, "
        f"95th percentile {p95:.0f} px, largest {largest:.0f} px (at the network's input)."
    )
    if is_global:
        return head + " The last stage pools over the whole image, so it sees every object whole."
    bigger = float((sides > field).mean())
    if bigger == 0:
        return head + (
            f" The last stage's receptive field ({field} px) is larger than every object: each "
            "output position of the last stage can see a whole object."
        )
    return head + (
        f" The last stage's receptive field ({field} px) is smaller than {bigger:.1%} of the "
        "objects: a single output position sees those only in part. Context modules (ASPP image "
        "pooling, non-local, GC), dilation in the last stage, or a coarser extra level (P6/P7) "
        "widen it."
    )


def format_table(rows: list[StageRow], extra: list[tuple[str, int, int]], size: int) -> str:
    lines = [
        f"{'part':<14}{'stride':>7}{'channels':>10}{'params':>14}{'GMACs@' + str(size):>13}"
        f"{'receptive field':>17}"
    ]
    for r in rows:
        rf = "-" if r.receptive_field is None else f"{r.receptive_field} px"
        if r.is_global:
            rf = "global"
        lines.append(
            f"{r.name:<14}{r.stride or '-':>7}{r.channels or '-':>10}{r.params:>14,}"
            f"{r.macs / 1e9:>13.3f}{rf:>17}"
        )
    for name, params, macs in extra:
        lines.append(f"{name:<14}{'-':>7}{'-':>10}{params:>14,}{macs / 1e9:>13.3f}{'-':>17}")
    total_p = sum(r.params for r in rows) + sum(e[1] for e in extra)
    total_m = sum(r.macs for r in rows) + sum(e[2] for e in extra)
    lines.append(f"{'total':<14}{'':>7}{'':>10}{total_p:>14,}{total_m / 1e9:>13.3f}")
    return "\n".join(lines)


# -- the `vtk analyze` command ----------------------------------------------------------------
def _instantiate(spec: dict[str, Any], base: type) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "obj", required=True)
    return parser.instantiate_classes(parser.parse_object({"obj": spec})).obj


def _objects(config: dict[str, Any], model: nn.Module, datamodule: Any, size: int):
    """(longer sides of the validation objects at the network's input, what they are)."""
    task = config["model"]["class_path"].rsplit(".", 1)[-1]
    if task == "DetectionTask":
        annotations = datamodule.paths["val"][1]
        transform = model.transform
        return coco_object_sizes(
            annotations, int(transform.min_size[-1]), int(transform.max_size)
        ), f"the validation boxes of {annotations}"
    if task == "SegmentationTask":
        datamodule.setup("validate")
        dataset = datamodule.datasets["val"]
        n = min(len(dataset), 500)
        masks = [dataset[i]["mask"].numpy() for i in range(n)]
        return mask_object_sizes(masks), f"the class regions of {n} validation masks"
    return np.asarray([size], dtype=np.float64), f"the {size} px input crop (the whole image)"


def analyze(argv: list[str]) -> str:
    """``vtk analyze RECIPE [--size N] [--data] [--num_classes N]``: the report, as text."""
    import argparse

    from lightning.pytorch import LightningDataModule

    parser = argparse.ArgumentParser(
        prog="vtk analyze",
        description="Per stage: stride, channels, parameters, MACs and receptive field.",
    )
    parser.add_argument("recipe")
    parser.add_argument("--size", type=int, help="input side for MACs (default: from the recipe)")
    parser.add_argument("--data", action="store_true", help="compare with the recipe's data")
    parser.add_argument("--num_classes", type=int, help="without --data (default 1000)")
    parser.add_argument("--rf_height", type=int, default=1024, help="input height for the RF")
    args = parser.parse_args(argv)
    config = read_recipe(args.recipe)
    datamodule = None
    if args.data:
        datamodule = _instantiate(config["data"], LightningDataModule)
    num_classes = getattr(datamodule, "num_classes", None) or args.num_classes or 1000
    model = build_model(config, num_classes).eval()
    net = config["model"]["init_args"]["model"]["init_args"]
    size = args.size or int(
        np.max(net.get("min_size", 0))
        or config["data"].get("init_args", {}).get("crop_size")
        or config["data"].get("init_args", {}).get("image_size")
        or 224
    )
    spec = _no_weights(copy.deepcopy(net["backbone"]))
    spec.setdefault("init_args", {}).pop("out_indices", None)
    full = _instantiate(spec, Backbone)
    rows = stage_rows(full, size, args.rf_height)

    backbone = find_backbone(model)
    x = torch.zeros(1, 3, size, size)
    if hasattr(model, "anchor_generator"):  # a torchvision-style detector: its network alone

        def forward(t: torch.Tensor) -> Any:
            return model.head(list(model.backbone(t).values()))

        total_macs, _ = _macs(_Call(forward), x)
    else:
        total_macs, _ = _macs(model, x)
    own_params = sum(p.numel() for p in backbone.parameters())
    extra = [
        (
            "neck + head",
            sum(p.numel() for p in model.parameters()) - own_params,
            total_macs - _macs(backbone, x)[0],
        )
    ]
    unused = sum(r.params for r in rows) - own_params
    lines = [
        f"{args.recipe}: {type(model).__name__} with {type(full).__name__} "
        f"({net['backbone'].get('init_args', {}).get('arch', '')}), {num_classes} classes, "
        f"input {size}x{size}",
        format_table(rows, extra, size),
    ]
    if unused > 0:
        lines.append(
            f"(the recipe's backbone leaves out stages with {unused:,} parameters: the table "
            "shows every stage, the total counts them)"
        )
    if datamodule is not None:
        last = rows[-1]
        sides, what = _objects(config, model, datamodule, size)
        lines.append(compare(last.receptive_field or 0, last.is_global, sides, what))
    return "\n".join(lines)


class _Call(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)
