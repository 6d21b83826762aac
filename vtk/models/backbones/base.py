"""What every backbone promises: a list of feature maps and a `feature_info` that describes them.

The shape contract (DESIGN.md): ``forward(x) -> list[Tensor]``, one map per requested stage,
coarse-to-fine strides in increasing order, and ``feature_info[i]`` gives the ``channels`` and
``stride`` of map ``i``. Backbones fill ``feature_info`` while they build their stages, from the
blocks themselves, so nobody types a channel count twice.

Stage numbering follows mmdet: stage 0 is the first stage after the stem (ResNet's ``layer1``);
``frozen_stages=0`` freezes the stem only, ``frozen_stages=k`` the stem and stages ``0..k-1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureInfo:
    """One output map of a backbone: its channel count, its stride w.r.t. the input, its module."""

    channels: int
    stride: int
    module: str


class Backbone(nn.Module):
    """Base class of all vtk backbones.

    A subclass passes its number of stages to ``__init__``, reads ``self.out_indices`` to know
    how many stages to build (none past the last requested one, so every parameter is used),
    then calls :meth:`_set_feature_info` with the :class:`FeatureInfo` of each stage it built.
    This base class handles ``out_indices``, ``frozen_stages`` and ``norm_eval``.
    """

    feature_info: list[FeatureInfo]

    def __init__(
        self,
        num_stages: int,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        n = num_stages
        out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
        if not out_indices or any(not -n <= i < n for i in out_indices):
            raise ValueError(
                f"{type(self).__name__}: out_indices={list(out_indices)} is not valid for a "
                f"backbone with {n} stages; use indices in 0..{n - 1} (stage 0 is the first "
                "stage after the stem)."
            )
        if not -1 <= frozen_stages <= n:
            raise ValueError(
                f"{type(self).__name__}: frozen_stages={frozen_stages} must be in -1..{n} "
                "(-1 freezes nothing, 0 the stem, k the stem and the first k stages)."
            )
        self.out_indices: tuple[int, ...] = tuple(sorted({i % n for i in out_indices}))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.feature_info = []

    @property
    def num_built_stages(self) -> int:
        """Stages a subclass builds: up to the last one whose output is requested."""
        return self.out_indices[-1] + 1

    def _set_feature_info(self, stages: Sequence[FeatureInfo]) -> None:
        """Keep the infos of the requested stages and apply ``frozen_stages``."""
        self.feature_info = [stages[i] for i in self.out_indices]
        self._freeze_stages()

    def stage_modules(self) -> list[list[nn.Module]]:
        """Modules of the stem (index 0) and of each built stage (index k+1)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def out_channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self.feature_info]

    # -- frozen stages and frozen BN statistics -------------------------------------------------
    def _frozen_modules(self) -> list[nn.Module]:
        groups = self.stage_modules()
        return [m for group in groups[: self.frozen_stages + 1] for m in group]

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self
