"""What every backbone promises, and the plug-ins every backbone accepts.

The shape contract (docs/contributing.md): ``forward(x) -> list[Tensor]``, one map per
requested stage, strides increasing, and ``feature_info[i]`` gives the ``channels`` and
``stride`` of map ``i``.
Backbones fill ``feature_info`` while they build their stages, from the blocks themselves, so
nobody types a channel count twice.

Stage numbering follows mmdet: stage 0 is the first stage after the stem (ResNet's ``layer1``);
``frozen_stages=0`` freezes the stem only, ``frozen_stages=k`` the stem and stages ``0..k-1``.

Plug-ins are arguments, not subclasses (every family takes them through ``**kwargs``):

==================  =====================================================================
``attention``       an :data:`~vtk.models.attention.ATTENTION` name ("se", "cbam", "eca",
                    "gc") placed where its paper places it in the family's blocks, in
                    ``attention_stages`` (default :meth:`Backbone.default_stages`), with
                    ``attention_args``
``non_local``       ``{stage: [block, ...]}``: an embedded-Gaussian non-local block after
                    each listed block (``non_local_args`` for its options)
``deform``          "v1" or "v2": the 3x3 convs of ``deform_stages`` (default from c3 on)
                    become deformable
``blur_pool``       a filter size (2-7): every downsampling is anti-aliased (BlurPool)
``stn``             a spatial transformer before the stem
==================  =====================================================================

Plug-in parameters keep their own initialisation (identity where the paper says so) and, as
they are new, are reported when pretrained weights are loaded.

Default stages follow the papers' configurations: SE, CBAM and ECA go into every block of
every stage (their ImageNet networks); GC and deformable convs into the stages from c3 (stride
8) on, as GCNet's and DCNv2's detection configurations (mmdetection's ``stage_with_gcb`` /
``stage_with_dcn = (False, True, True, True)``, DCNv2 §4). ``plugin_stages()`` says where a
built backbone has each plug-in; ``vtk analyze`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from torch import Tensor, nn

from vtk._compat import BATCH_NORM
from vtk.models.attention import ATTENTION, NonLocal2d, SpatialTransformer
from vtk.models.layers import DEFORM_CONV, BlurPool2d, DeformConv2d

AttentionName = Literal[tuple(ATTENTION)]  # type: ignore[valid-type]
DeformVersion = Literal[tuple(DEFORM_CONV)]  # type: ignore[valid-type]
ModuleFactory = Callable[[int], nn.Module]


@dataclass(frozen=True)
class FeatureInfo:
    """One output map of a backbone: its channel count, its stride w.r.t. the input, its module."""

    channels: int
    stride: int
    module: str


#: plug-ins that their papers put in the stages from c3 (stride 8) on; the others go everywhere
FROM_C3 = frozenset({"gc", "deform"})


def plugin_types() -> tuple[type[nn.Module], ...]:
    """Module types that bring their own initialisation (the backbone's init leaves them be)."""
    return (*ATTENTION.values(), NonLocal2d, SpatialTransformer, DeformConv2d)


class Backbone(nn.Module):
    """Base class of all vtk backbones.

    A subclass passes its number of stages to ``__init__``, reads ``self.out_indices`` to know
    how many stages to build (none past the last requested one, so every parameter is used),
    asks :meth:`attention_layer`, :meth:`conv3x3_layer`, :meth:`non_local_layer` and
    :meth:`blur_layer` for the plug-ins of each stage while it builds it, implements
    :meth:`forward_features`, and finally calls :meth:`_set_feature_info`.

    Args:
        num_stages: stages of the family (4 for ResNet, 5 for VGG, 3 for CIFAR ResNets).
        out_indices: which stages to return (default all).
        frozen_stages: -1 none, 0 the stem, k the stem and the first k stages.
        norm_eval: keep BatchNorm layers in eval mode while training.
        attention, attention_stages, attention_args: in-block attention (see module docs); an
            ``attention_args`` value given as a list has one entry per stage (ECA's
            ``kernel_size: [3, 5, 5, 7]``, the authors' released ECA-ResNet-50).
        non_local, non_local_args: non-local blocks after given blocks.
        deform, deform_stages: deformable 3x3 convs.
        blur_pool: BlurPool filter size for anti-aliased downsampling.
        stn: a spatial transformer before the stem.
        stem_out: also return the stem's stride-2 map, first (U-Net's skip at half
            resolution), for the families whose stem has one (ResNet, timm's networks); its
            ``feature_info`` entry comes first too.
    """

    feature_info: list[FeatureInfo]
    #: the stage whose output has stride 8 (detection papers' "c3"), where GC and deformable
    #: convs start by default; a family whose stages stride differently overrides it
    c3_stage: int = 1

    def __init__(
        self,
        num_stages: int,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        attention: AttentionName | None = None,
        attention_stages: Sequence[int] | None = None,
        attention_args: dict[str, Any] | None = None,
        non_local: Mapping[int, Sequence[int]] | None = None,
        non_local_args: dict[str, Any] | None = None,
        deform: DeformVersion | None = None,
        deform_stages: Sequence[int] | None = None,
        blur_pool: int | None = None,
        stn: bool = False,
        stem_out: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        n = num_stages
        out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
        if not out_indices or any(not -n <= i < n for i in out_indices):
            raise ValueError(
                f"{name}: out_indices={list(out_indices)} is not valid for a backbone with {n} "
                f"stages; use indices in 0..{n - 1} (stage 0 is the first stage after the stem)."
            )
        if not -1 <= frozen_stages <= n:
            raise ValueError(
                f"{name}: frozen_stages={frozen_stages} must be in -1..{n} "
                "(-1 freezes nothing, 0 the stem, k the stem and the first k stages)."
            )
        if attention is not None and attention not in ATTENTION:
            raise ValueError(
                f"{name}: unknown attention {attention!r}; valid: {', '.join(ATTENTION)}"
            )
        if deform is not None and deform not in DEFORM_CONV:
            raise ValueError(f"{name}: unknown deform {deform!r}; valid: {', '.join(DEFORM_CONV)}")
        if blur_pool is not None and not 2 <= blur_pool <= 7:
            raise ValueError(f"{name}: blur_pool is a filter size in 2..7, got {blur_pool}")
        for what, stages in (
            ("attention_stages", attention_stages),
            ("deform_stages", deform_stages),
            ("non_local", None if non_local is None else list(non_local)),
        ):
            bad = [s for s in stages or () if not 0 <= s < n]
            if bad:
                raise ValueError(
                    f"{name}: {what} names stages {bad}; {name} has stages 0..{n - 1}."
                )
        self.out_indices: tuple[int, ...] = tuple(sorted({i % n for i in out_indices}))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.feature_info = []
        self.num_stages = n
        self.attention = attention
        self.attention_stages = set(
            self.default_stages(attention or "") if attention_stages is None else attention_stages
        )
        self.attention_args = dict(attention_args or {})
        for key, value in self.attention_args.items():  # a list: one value per stage
            if isinstance(value, (list, tuple)) and len(value) != n:
                raise ValueError(
                    f"{name}: attention_args {key} lists {len(value)} values; a list gives one "
                    f"per stage and {name} has {n} stages."
                )
        self.non_local_positions = {
            int(s): sorted(set(blocks)) for s, blocks in (non_local or {}).items()
        }
        self.non_local_args = dict(non_local_args or {})
        self.deform = deform
        self.deform_stages = set(
            self.default_stages("deform") if deform_stages is None else deform_stages
        )
        self.blur_pool = blur_pool
        self.stn = SpatialTransformer(3) if stn else None
        self.stem_out = bool(stem_out)

    def default_stages(self, plugin: str) -> list[int]:
        """The stages ``plugin`` ("se", "gc", "deform", ...) goes into when none are given."""
        first = self.c3_stage if plugin in FROM_C3 else 0
        return list(range(first, self.num_stages))

    def plugin_stages(self) -> dict[str, str]:
        """Where this backbone has each plug-in, in words (for ``vtk analyze``)."""
        built = range(self.num_built_stages)
        out = {}
        if self.attention is not None:
            stages = sorted(s for s in self.attention_stages if s in built)
            out[f"attention {self.attention}"] = f"stages {', '.join(map(str, stages))}"
        if self.deform is not None:
            stages = sorted(s for s in self.deform_stages if s in built)
            out[f"deform {self.deform}"] = f"stages {', '.join(map(str, stages))}"
        if self.non_local_positions:
            where = "; ".join(
                f"stage {s} after blocks {', '.join(map(str, b))}"
                for s, b in sorted(self.non_local_positions.items())
            )
            out["non_local"] = where
        if self.blur_pool is not None:
            out[f"blur_pool {self.blur_pool}"] = "every downsampling"
        if self.stn is not None:
            out["stn"] = "before the stem"
        return out

    # -- for subclasses: the plug-ins of a stage ------------------------------------------------
    @property
    def num_built_stages(self) -> int:
        """Stages a subclass builds: up to the last one whose output is requested."""
        return self.out_indices[-1] + 1

    def attention_layer(self, stage: int) -> ModuleFactory | None:
        """``factory(channels)`` for the in-block attention of ``stage``, or None."""
        if self.attention is None or stage not in self.attention_stages:
            return None
        args = {
            k: v[stage] if isinstance(v, (list, tuple)) else v
            for k, v in self.attention_args.items()
        }
        return partial(ATTENTION[self.attention], **args)

    def conv3x3_layer(self, stage: int) -> Callable[..., nn.Module]:
        """``nn.Conv2d`` or, in a deformable stage, :class:`DeformConv2d` (same arguments)."""
        if self.deform is None or stage not in self.deform_stages:
            return nn.Conv2d
        return DEFORM_CONV[self.deform]

    def non_local_layer(self, stage: int, block: int) -> ModuleFactory | None:
        """``factory(channels)`` for a non-local block after ``block`` of ``stage``, or None."""
        if block not in self.non_local_positions.get(stage, ()):
            return None
        return partial(NonLocal2d, **self.non_local_args)

    def blur_layer(self, stride: int) -> nn.Module | None:
        """The anti-aliased subsampling that replaces a stride, or None."""
        if self.blur_pool is None or stride == 1:
            return None
        return BlurPool2d(self.blur_pool, stride)

    def _check_blocks(self, blocks_per_stage: Sequence[int], unit: str = "block") -> None:
        """Refuse non-local positions past a stage's last block."""
        for stage, blocks in self.non_local_positions.items():
            n = blocks_per_stage[stage]
            bad = [b for b in blocks if not 0 <= b < n]
            if bad:
                raise ValueError(
                    f"{type(self).__name__}: non_local asks for {unit}s {bad} of stage {stage}, "
                    f"which has {unit}s 0..{n - 1}."
                )

    def _set_feature_info(
        self, stages: Sequence[FeatureInfo], stem: FeatureInfo | None = None
    ) -> None:
        """Keep the infos of the requested stages (after the ``stem``'s, with ``stem_out``) and
        apply ``frozen_stages``."""
        if self.stem_out and stem is None:
            raise ValueError(
                f"{type(self).__name__} has no stride-2 stem output for stem_out (its first "
                f"stage is at stride {stages[0].stride}): leave stem_out out."
            )
        self.feature_info = [stem] * self.stem_out + [stages[i] for i in self.out_indices]
        self._freeze_stages()

    def own_modules(self) -> Iterator[nn.Module]:
        """The backbone's modules outside plug-ins, for the family's weight initialisation."""
        skip: set[int] = set()
        types = plugin_types()
        for m in self.modules():
            if isinstance(m, types):
                skip.update(id(s) for s in m.modules())
        return (m for m in self.modules() if id(m) not in skip)

    def stage_modules(self) -> list[list[nn.Module]]:
        """Modules of the stem (index 0) and of each built stage (index k+1)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        if self.stn is not None:
            x = self.stn(x)
        return self.forward_features(x)

    def forward_features(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def out_channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self.feature_info]

    #: whether weights were loaded into the backbone (its ``weights`` argument); a model that
    #: loads its own whole-model weights says so to :meth:`release_frozen` instead
    pretrained: bool = False
    #: the (mean, std) of RGB in [0, 1] its weights were trained with, as their owner says
    #: (torchvision's weights enum, timm's ``pretrained_cfg``, a vtk weights card); None: no
    #: weights, or a file that does not say (see :func:`network_normalisation`)
    weights_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def release_frozen(self) -> list[str]:
        """Unfreeze what only pretrained weights justify: frozen stages (``frozen_stages``),
        BatchNorm statistics kept in eval mode (``norm_eval``) and ``FrozenBatchNorm2d`` layers
        (replaced by trainable BatchNorm2d). Called by the models when neither the backbone nor
        the model was given weights: random weights frozen do not train (a fine-tuning recipe
        run offline with ``weights: null``). Returns what was released, for the log line."""
        from torchvision.ops import FrozenBatchNorm2d

        released = []
        if self.frozen_stages >= 0:
            released.append(f"frozen_stages {self.frozen_stages}")
            for m in self._frozen_modules():
                for p in m.parameters():
                    p.requires_grad_(True)
            self.frozen_stages = -1
        if self.norm_eval:
            released.append("norm_eval")
            self.norm_eval = False
        frozen_bn = [
            (name, m) for name, m in self.named_modules() if isinstance(m, FrozenBatchNorm2d)
        ]
        if frozen_bn:
            released.append(f"{len(frozen_bn)} FrozenBatchNorm2d layers (now BatchNorm2d)")
        for name, m in frozen_bn:
            parent_name, _, child = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            setattr(parent, child, nn.BatchNorm2d(m.weight.shape[0], eps=m.eps))
        self.train(self.training)
        return released

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
                    if isinstance(m, BATCH_NORM):
                        m.eval()
        return self


def release_if_untrained(model: nn.Module, backbone: Backbone, loaded: bool) -> None:
    """``backbone.release_frozen()`` when neither ``model`` (``loaded``) nor the backbone was
    given weights, with one log line saying what was released and why."""
    import logging

    if loaded or backbone.pretrained:
        return
    released = backbone.release_frozen()
    if released:
        logging.getLogger("vtk").warning(
            "%s has no pretrained weights (weights: null here and in its backbone), so what "
            "only pretrained weights justify is released to train: %s. Give weights to keep "
            "them frozen.", type(model).__name__, ", ".join(released),
        )  # fmt: skip


def network_normalisation(
    model: nn.Module,
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation a network's input needs: its (first) backbone's weights'
    (:attr:`Backbone.weights_norm`), or None when no weights say (vtk's default then applies,
    :data:`vtk.spec.IMAGENET_MEAN`)."""
    for module in model.modules():
        if isinstance(module, Backbone) and module.weights_norm is not None:
            return module.weights_norm
    return None
