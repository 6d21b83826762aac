"""What a recipe's network is: per backbone stage its output stride, channels, parameters,
MACs at an input size and theoretical receptive field, then the neck and head; and, with the
recipe's data, how the last stage's receptive field compares with the objects' sizes.

    vtk analyze resnet50_imagenet --size 224
    vtk analyze demo_detection --data
    vtk analyze demo_segmentation --data --data.crop_size 96

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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vtk._compat import BATCH_NORM
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
            if isinstance(m, BATCH_NORM) or type(m).__name__.startswith("FrozenBatchNorm"):
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
def analyze(argv: list[str]) -> str:
    """``vtk analyze RECIPE [--size N] [--data] [--num_classes N] [--data.KEY VALUE ...]``:
    the report, as text."""
    import argparse

    from vtk.recipe import Recipe, instantiate

    parser = argparse.ArgumentParser(
        prog="vtk analyze",
        description="Per stage: stride, channels, parameters, MACs and receptive field.",
    )
    parser.add_argument("recipe", help="a recipe's path or installed name")
    parser.add_argument("--size", type=int, help="input side for MACs (default: the task's)")
    parser.add_argument("--data", action="store_true", help="compare with the recipe's data")
    parser.add_argument("--num_classes", type=int, help="without --data (default 1000)")
    parser.add_argument("--rf_height", type=int, default=1024, help="input height for the RF")
    args, overrides = parser.parse_known_args(argv)
    recipe = Recipe.load(args.recipe, overrides, weights=False)
    datamodule = None
    if args.data:
        task, datamodule = recipe.build()
    else:
        task = recipe.task(args.num_classes or 1000)
    model = task.model.eval()
    example = task.example_input(args.size)
    size = args.size or task.default_size()

    spec = copy.deepcopy(recipe.config["model"]["init_args"]["model"]["init_args"]["backbone"])
    spec.setdefault("init_args", {}).pop("out_indices", None)
    full = instantiate(spec, Backbone)
    rows = stage_rows(full, size, args.rf_height)

    backbone = find_backbone(model)
    x = torch.zeros(1, 3, size, size)
    total_macs, _ = _macs(model, example)
    own_params = sum(p.numel() for p in backbone.parameters())
    extra = [
        (
            "neck + head",
            sum(p.numel() for p in model.parameters()) - own_params,
            total_macs - _macs(backbone, x)[0],
        )
    ]
    unused = sum(r.params for r in rows) - own_params
    arch = spec["init_args"].get("arch", "")
    lines = [
        f"{recipe.name}: {type(model).__name__} with {type(full).__name__} ({arch}), "
        f"{task.num_classes} classes, input {size}x{size}",
        format_table(rows, extra, size),
    ]
    plugins = full.plugin_stages()
    if plugins:
        lines.append("plug-ins: " + "; ".join(f"{k} in {v}" for k, v in plugins.items()))
    if unused > 0:
        lines.append(
            f"(the recipe's backbone leaves out stages with {unused:,} parameters: the table "
            "shows every stage, the total counts them)"
        )
    if datamodule is not None:
        last = rows[-1]
        sides, what = task.object_sizes(datamodule)
        lines.append(compare(last.receptive_field or 0, last.is_global, sides, what))
    return "\n".join(lines)
