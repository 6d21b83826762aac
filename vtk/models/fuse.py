"""Inference-only rewrites of a trained network: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm (or torchvision's ``FrozenBatchNorm2d``) is a per-channel affine map,
``y = (x - mean) * gamma / sqrt(var + eps) + beta``; when its input is a convolution's output
that nothing else reads, the map folds into the convolution's weight and bias and the
BatchNorm becomes an identity: one pass over the activations less per pair, the same outputs
(up to float rounding).

The pairs are found by running the network once on an example input and recording, for every
normalisation layer, whether the tensor it received is the very tensor a convolution returned
— so any architecture is handled without knowing how its modules are named or nested (the
backbones with every plug-in, the necks, the heads). A convolution whose output is also read
elsewhere would change that other reader, so :func:`fold_batchnorm` checks the folded network
against the original on the example and refuses a fold that changes the output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["fold_batchnorm", "foldable_pairs", "tensors_of"]

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def tensors_of(x: Any) -> list[Tensor]:
    """The tensors of a (nested) output or input, in the order ONNX flattens them."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for v in x.values() for t in tensors_of(v)]
    if isinstance(x, list | tuple):
        return [t for v in x for t in tensors_of(v)]
    return []


def foldable_pairs(
    model: nn.Module, run: Callable[[nn.Module], Any]
) -> list[tuple[nn.Conv2d, nn.Module]]:
    """(convolution, norm) pairs where the norm's input is the convolution's output, found by
    ``run(model)`` (a forward pass in eval mode)."""
    # the outputs are kept alive for the pass: an id is only unique among living objects
    made_by: dict[int, tuple[nn.Conv2d, Tensor]] = {}
    pairs: list[tuple[nn.Conv2d, nn.Module]] = []
    seen: set[int] = set()
    calls: dict[int, int] = {}

    def after_conv(module: nn.Module, args: Any, output: Tensor) -> None:
        made_by[id(output)] = (module, output)  # type: ignore[assignment]
        calls[id(module)] = calls.get(id(module), 0) + 1

    def before_norm(module: nn.Module, args: Any) -> None:
        found = made_by.get(id(args[0])) if args else None
        conv = found[0] if found is not None and found[1] is args[0] else None
        if conv is not None and id(module) not in seen:
            seen.add(id(module))
            pairs.append((conv, module))

    hooks = []
    for m in model.modules():
        if type(m) is nn.Conv2d:  # subclasses (deformable, weight-standardised) compute otherwise
            hooks.append(m.register_forward_hook(after_conv))
        elif type(m) in _NORMS or _is_norm_act(m):  # a subclass may compute more: left be
            hooks.append(m.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            outputs = run(model)
    finally:
        for h in hooks:
            h.remove()
    del outputs
    # a convolution called more than once (shared) or feeding two norms stays unfolded
    per_conv: dict[int, int] = {}
    for conv, _ in pairs:
        per_conv[id(conv)] = per_conv.get(id(conv), 0) + 1
    return [(c, n) for c, n in pairs if per_conv[id(c)] == 1 and calls.get(id(c), 0) == 1]


def _is_norm_act(m: nn.Module) -> bool:
    """timm's ``BatchNormAct2d``: BatchNorm, then its ``drop`` and ``act`` modules in one."""
    return (
        isinstance(m, nn.BatchNorm2d)
        and isinstance(getattr(m, "act", None), nn.Module)
        and isinstance(getattr(m, "drop", None), nn.Module)
    )


def _what_follows_the_norm(norm: nn.Module) -> nn.Module:
    """What replaces a folded norm: nothing, or the activation a norm+act module applies."""
    if _is_norm_act(norm):
        return nn.Sequential(norm.drop, norm.act)  # type: ignore[arg-type]
    return nn.Identity()


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    # in float64, then back to the convolution's dtype: one rounding per folded value
    dtype = conv.weight.dtype
    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - norm.running_mean.double()) * scale + norm.bias.double()
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


def _replace(model: nn.Module, target: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is target:
                setattr(parent, name, new)


def fold_batchnorm(
    model: nn.Module, example: Any, run: Callable[[nn.Module, Any], Any] | None = None,
    atol: float = 1e-4,
) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """A copy of ``model`` (in eval mode) with every foldable BatchNorm folded into its
    convolution, and a report: ``pairs`` folded, ``max_abs_diff`` between the two networks'
    outputs on ``example``. ``run(model, example)`` is the forward pass (default
    ``model(example)``). Raises ``ValueError`` when the outputs differ by more than ``atol``
    relative to their scale (a fold that is not exact); the original is left as it was."""
    run = run or (lambda m, x: m(x))
    original = model.eval()
    folded = copy.deepcopy(original).eval()
    pairs = foldable_pairs(folded, lambda m: run(m, example))
    for conv, norm in pairs:
        _fold(conv, norm)
        _replace(folded, norm, _what_follows_the_norm(norm))
    with torch.no_grad():
        want, got = tensors_of(run(original, example)), tensors_of(run(folded, example))
    diff, scale = 0.0, 1.0
    for a, b in zip(want, got):
        if a.numel() and a.is_floating_point():
            diff = max(diff, float((a.double() - b.double()).abs().max()))
            scale = max(scale, float(a.double().abs().max()))
    if len(want) != len(got) or any(a.shape != b.shape for a, b in zip(want, got)):
        raise ValueError("folding BatchNorm changed the network's output structure")
    if diff > atol * scale:
        raise ValueError(
            f"folding BatchNorm changed the output by up to {diff:.3g} (values up to {scale:.3g})"
        )
    return folded, {"pairs": len(pairs), "max_abs_diff": diff, "max_abs_value": scale}
