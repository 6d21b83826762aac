"""Per-iteration learning-rate schedules with linear warm-up.

A task calls ``lr_scheduler(optimizer, total_steps)`` and steps it after every optimiser
step, so any scheduler whose first two arguments are the optimizer and the run's length in
steps fits a recipe: these, or torch's own ``PolynomialLR`` / ``CosineAnnealingLR``::

    lr_scheduler:
      class_path: vtk.optim.WarmupPolyLR
      init_args: {power: 0.9}

The factor is a closed form of the step, so resuming from a checkpoint continues exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from vtk._compat import BATCH_NORM, INSTANCE_NORM
from vtk.errors import ConfigError

log = logging.getLogger("vtk")


# -- parameter groups ---------------------------------------------------------------------------
#: the layers whose parameters ``norm_bias_decay=False`` exempts from weight decay
NORM_LAYERS = (
    BATCH_NORM,
    nn.GroupNorm,
    nn.LayerNorm,
    INSTANCE_NORM,
    nn.LocalResponseNorm,
)


def find_backbone(model: nn.Module) -> nn.Module | None:
    """The model's pretrained feature extractor: its first
    :class:`~vtk.models.backbones.base.Backbone`, else its ``backbone`` attribute."""
    from vtk.models.backbones.base import Backbone

    found = next((m for m in model.modules() if isinstance(m, Backbone)), None)
    return found if found is not None else getattr(model, "backbone", None)


def parameter_groups(
    model: nn.Module,
    backbone_lr_mult: float = 1.0,
    norm_bias_decay: bool = True,
    parameters: Iterable[nn.Parameter] | None = None,
) -> list[dict[str, Any]]:
    """The trainable ``parameters`` (default: ``model``'s; a task gives all of its own) in
    optimizer groups by their place in ``model``, each with a ``name`` and an
    ``lr_mult``: ``rest`` (full LR) first, then ``backbone`` (``backbone_lr_mult``), each
    split into a ``/no_decay`` group (weight decay 0) when ``norm_bias_decay`` is off.
    Empty groups are left out."""
    backbone = find_backbone(model) if backbone_lr_mult != 1.0 else None
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    if backbone_lr_mult != 1.0 and backbone is None:
        raise ConfigError(
            f"backbone_lr_mult: {type(model).__name__} has no backbone "
            "(a vtk.models.backbones.Backbone or a 'backbone' attribute)."
        )
    exempt: set[int] = set()
    if not norm_bias_decay:
        for module in model.modules():
            is_norm = isinstance(module, NORM_LAYERS)
            for name, p in module.named_parameters(recurse=False):
                if is_norm or name == "bias":
                    exempt.add(id(p))
    groups: dict[str, dict[str, Any]] = {}
    for p in model.parameters() if parameters is None else parameters:
        if not p.requires_grad:
            continue
        part = "backbone" if id(p) in in_backbone else "rest"
        name = part + ("/no_decay" if id(p) in exempt else "")
        group = groups.setdefault(
            name,
            {"params": [], "name": name,
             "lr_mult": backbone_lr_mult if part == "backbone" else 1.0},
        )  # fmt: skip
        if id(p) in exempt:
            group["weight_decay"] = 0.0
        group["params"].append(p)
    order = ["rest", "rest/no_decay", "backbone", "backbone/no_decay"]
    return [groups[n] for n in order if n in groups]


# -- schedules ----------------------------------------------------------------------------------
class _WarmupLR(LRScheduler):
    """``lr = base_lr * warmup(step) * factor(step)``; subclasses define ``factor``."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
        last_epoch: int = -1,
    ) -> None:
        if total_steps < 1:
            raise ConfigError(f"total_steps must be positive, got {total_steps}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be 0 or more, got {warmup_steps}")
        if warmup_steps >= total_steps:  # a short debugging run (fast_dev_run, limit_train_batches)
            log.warning(
                "the LR warm-up (%d steps) is not shorter than this run (%d steps): no warm-up.",
                warmup_steps,
                total_steps,
            )
            warmup_steps = 0
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = warmup_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        step = min(self.last_epoch, self.total_steps)
        scale = self.factor(step)
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            scale *= self.warmup_factor * (1 - alpha) + alpha
        return [base_lr * scale for base_lr in self.base_lrs]


class WarmupPolyLR(_WarmupLR):
    """DeepLab's "poly" policy: ``(1 - step / total_steps) ** power`` (DeepLabv3 §4.1), down
    to ``min_factor`` of the base LR at the end (mmsegmentation's ``min_lr``: 1e-4 for a base
    of 0.01 is ``min_factor: 0.01``)."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        power: float = 0.9,
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
        last_epoch: int = -1,
        min_factor: float = 0.0,
    ) -> None:
        self.power, self.min_factor = power, min_factor
        super().__init__(optimizer, total_steps, warmup_steps, warmup_factor, last_epoch)

    def factor(self, step: int) -> float:
        poly = (1 - step / self.total_steps) ** self.power
        return (1 - self.min_factor) * poly + self.min_factor


class WarmupCosineLR(_WarmupLR):
    """Cosine decay from the base LR to ``min_factor * base_lr`` after the warm-up."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        min_factor: float = 0.0,
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
        last_epoch: int = -1,
    ) -> None:
        self.min_factor = min_factor
        super().__init__(optimizer, total_steps, warmup_steps, warmup_factor, last_epoch)

    def factor(self, step: int) -> float:
        span = max(1, self.total_steps - self.warmup_steps)
        t = max(0, step - self.warmup_steps) / span
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))


class WarmupMultiStepLR(_WarmupLR):
    """Multiply the LR by ``gamma`` at each milestone.

    ``milestones`` are fractions of the run (``[0.67, 0.89]``, as mmdet's 1x schedule's epochs
    8 and 11 of 12) when all are below 1, else step numbers.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        milestones: Sequence[float] = (0.67, 0.89),
        gamma: float = 0.1,
        warmup_steps: int = 0,
        warmup_factor: float = 0.001,
        last_epoch: int = -1,
    ) -> None:
        fractions = all(m < 1 for m in milestones)
        self.milestones = sorted(int(m * total_steps) if fractions else int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, total_steps, warmup_steps, warmup_factor, last_epoch)

    def factor(self, step: int) -> float:
        return self.gamma ** sum(step >= m for m in self.milestones)
