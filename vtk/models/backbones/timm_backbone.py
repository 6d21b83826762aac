"""Any timm backbone under vtk's necks and heads.

timm (``pip install timm``, or ``pip install vtk-vision[timm]``) builds hundreds of networks as
feature extractors (``features_only=True``) and says what each map is (``feature_info``:
channels, reduction). :class:`TimmBackbone` puts one behind vtk's backbone contract, so FPN,
ASFF and RFB, ASPP and DeepLabV3+ and the classification head take it unchanged::

    backbone:
      class_path: vtk.models.backbones.TimmBackbone
      init_args: {name: convnext_tiny, out_indices: [1, 2, 3], weights: /path/convnext_tiny.safetensors}

Stages are numbered as vtk numbers them: stage 0 is the first stage after the stem (stride 4),
so ``out_indices: [1, 2, 3]`` is C3-C5 for a ResNet, a ConvNeXt, an EfficientNet or a RegNet
alike; timm's stride-2 map (the stem's, where a family has one) is part of the stem. Channels
and strides are timm's ``feature_info``, never typed.

Plug-ins: vtk's in-block plug-ins (``attention``, ``deform``, ``non_local``, ``blur_pool``) are
built into vtk's own blocks and do not apply to timm's; ``stn`` (before the stem) does. timm's
ResNet family has its own in-block attention: ``attn_layer: se`` (also ``eca``, ``cbam``,
``ese``, ``gc``, ...; timm's ``block_args``). ``timm_args`` passes anything else to
``timm.create_model`` (``drop_path_rate``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vtk.errors import ConfigError, WeightsError
from vtk.models.backbones.base import Backbone, FeatureInfo

#: vtk plug-ins built into vtk's own blocks (TimmBackbone refuses them, naming timm's route)
VTK_BLOCK_PLUGINS = ("attention", "deform", "non_local", "blur_pool")


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "TimmBackbone needs timm: pip install timm (or pip install vtk-vision[timm])."
        ) from None
    return timm


class TimmBackbone(Backbone):
    """A timm network as a vtk backbone (see the module docs).

    Args:
        name: timm's model name (``resnet50``, ``convnext_tiny``, ``efficientnet_b0``,
            ``regnety_016``, ...; ``timm.list_models()``).
        out_indices: which stages to return, vtk's numbering (stage 0 at stride 4; default all).
        output_stride: 32, 16 or 8, for the families timm dilates (ResNets, EfficientNets,
            RegNets, ...); another family with 16 or 8 is an error naming it.
        weights: None (random initialisation) or the path of timm's weights file for ``name``
            (``pytorch_model.bin`` / ``model.safetensors`` from its Hugging Face page, or a
            ``state_dict`` saved from ``timm.create_model(name)``); nothing is downloaded.
        attn_layer: timm's in-block attention for its ResNet family (``se``, ``eca``, ``cbam``).
        timm_args: more keyword arguments for ``timm.create_model``.
        frozen_stages, norm_eval, stn, stem_out: as every vtk backbone (:class:`Backbone`);
            ``stem_out`` for the networks timm gives a stride-2 level (ResNets, EfficientNets).
    """

    def __init__(
        self,
        name: str,
        out_indices: Sequence[int] | None = None,
        output_stride: int = 32,
        weights: str | None = None,
        attn_layer: str | None = None,
        timm_args: dict[str, Any] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        stem_out: bool = False,
        **plugins: Any,
    ) -> None:
        given = [k for k in VTK_BLOCK_PLUGINS if plugins.get(k) is not None]
        if given:
            raise ConfigError(
                f"TimmBackbone({name}): vtk's {', '.join(given)} plug-ins are built into vtk's "
                "own blocks and do not apply to timm's networks. For timm's ResNets use "
                "attn_layer: se (or eca, cbam); or use a vtk backbone (ResNet, VGG, DenseNet) "
                "with the plug-in."
            )
        unknown = sorted(set(plugins) - {*VTK_BLOCK_PLUGINS, "stn", *_PLUGIN_EXTRAS})
        if unknown:
            raise ConfigError(f"TimmBackbone has no argument {', '.join(unknown)}.")
        timm = _timm()
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        args = dict(timm_args or {})
        if attn_layer is not None:
            args["block_args"] = {**args.get("block_args", {}), "attn_layer": attn_layer}
        if output_stride != 32:
            args["output_stride"] = output_stride
        if weights is not None:
            file = Path(weights).expanduser()
            if not file.is_file():
                raise WeightsError(
                    f"TimmBackbone({name}) reads weights from a local file only and {weights} is "
                    "not one: download timm's file for the model (pytorch_model.bin or "
                    "model.safetensors from its Hugging Face page) and give its path, or null."
                )
            args.update(pretrained=True, pretrained_cfg_overlay={"file": str(file)})
        probe = self._create(timm, name, dict(args, pretrained=False), None)
        levels = probe.feature_info.get_dicts()
        # vtk's stages: timm's levels from stride 4 on; a stride-2 level is the stem's
        first = next((i for i, d in enumerate(levels) if d["reduction"] >= 4), 0)
        stages = levels[first:]
        super().__init__(
            len(stages), out_indices, frozen_stages, norm_eval, stn=bool(plugins.get("stn")),
            stem_out=stem_out,
        )  # fmt: skip
        self.name = name
        timm_indices = [first + i for i in range(self.num_built_stages)]
        if stem_out and first > 0:  # the stride-2 level, first
            timm_indices.insert(0, first - 1)
        if weights is None and len(timm_indices) == len(levels):
            self.body = probe
        else:  # only what the requested stages use is built (and loaded)
            self.body = self._create(timm, name, args, timm_indices)
        self._stage_groups = self._group_children([d["module"] for d in levels], first)
        self._drop_trailing_modules()
        if frozen_stages >= 0 and len(self._stage_groups) < self.num_built_stages + 1:
            raise ConfigError(
                f"frozen_stages is not available for timm's {name}: its feature modules could "
                "not be told apart by stage; freeze with the optimizer's parameter groups."
            )
        built = [
            FeatureInfo(int(d["num_chs"]), int(d["reduction"]), f"body.{d['module']}")
            for d in self.body.feature_info.get_dicts()
        ]
        has_stem = first > 0 and len(built) > self.num_built_stages
        stem = built[-self.num_built_stages - 1] if has_stem else None
        self._set_feature_info(built[-self.num_built_stages :], stem=stem)
        self.pretrained = weights is not None
        if self.pretrained:  # the statistics timm's weights were trained with (pretrained_cfg)
            cfg = dict(getattr(self.body, "pretrained_cfg", None) or {})
            if cfg.get("mean") and cfg.get("std"):
                self.weights_norm = (tuple(cfg["mean"]), tuple(cfg["std"]))

    @staticmethod
    def _create(timm: Any, name: str, args: dict[str, Any], indices: list[int] | None) -> nn.Module:
        extra = {} if indices is None else {"out_indices": indices}
        try:
            return timm.create_model(name, features_only=True, **extra, **args)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
                raise ConfigError(
                    f"timm has no model {name!r}; names like it: {', '.join(close) or 'none'} "
                    "(timm.list_models() lists them all)."
                ) from None
            raise ConfigError(f"timm could not build {name} with {args}: {e}") from None
        except TypeError as e:
            raise ConfigError(
                f"timm's {name} does not take these arguments ({e}): output_stride 16 / 8 only "
                "for the families timm dilates (ResNets, EfficientNets, RegNets); attn_layer "
                "only for its ResNet family."
            ) from None

    def _group_children(self, modules: list[str], first: int) -> list[list[nn.Module]]:
        """The body's modules as [stem, stage 0, stage 1, ...], in order: each feature level's
        module closes its group; a level below stride 4 (``first`` > 0) closes the stem. The
        body is walked down only as far as the level modules lie (EfficientNet's
        ``blocks.1``), so a stage holds the blocks between two levels."""

        def norm(name: str) -> str:  # timm's FeatureListNet names "stages.0" as "stages_0"
            return name.replace(".", "_")

        ends = {norm(name): i for i, name in enumerate(modules)}

        def units(module: nn.Module, prefix: str) -> Any:
            for child_name, child in module.named_children():
                name = f"{prefix}.{child_name}" if prefix else child_name
                if norm(name) in ends or not any(m.startswith(name + ".") for m in modules):
                    yield name, child
                else:
                    yield from units(child, name)

        groups: list[list[nn.Module]] = [[]]
        names: list[list[str]] = [[]]
        for name, child in units(self.body, ""):
            groups[-1].append(child)
            names[-1].append(name)
            level = ends.get(norm(name))
            if level is not None and level >= first - 1:
                groups.append([])
                names.append([])
        built = first + self.num_built_stages  # levels built: the stem's and the stages'
        closed = built if first else built + 1  # groups closed by them (incl. the stem)
        self._trailing = [n for group in names[closed:] for n in group]
        groups = groups[:closed] if first else groups[:built]
        if not groups[-1]:
            groups.pop()
        if first == 0 and groups and len(groups[0]) > 1:  # the stem precedes stage 0's module
            groups = [groups[0][:-1], [groups[0][-1]], *groups[1:]]
        return groups

    def _drop_trailing_modules(self) -> None:
        """Blocks past the last requested stage that timm's feature wrapper keeps (EfficientNet's
        and MobileNet's run every block): removed, so every parameter is used (DDP)."""
        for name in reversed(self._trailing):
            parent_name, _, child = name.rpartition(".")
            parent = self.body.get_submodule(parent_name) if parent_name else self.body
            if isinstance(parent, nn.Sequential) and child.isdigit():
                del parent[int(child)]

    def stage_modules(self) -> list[list[nn.Module]]:
        return self._stage_groups

    def forward_features(self, x: Tensor) -> list[Tensor]:
        maps = self.body(x)
        skip = len(maps) - self.num_built_stages  # the stem's stride-2 map, when built
        stem = [maps[skip - 1]] if self.stem_out else []
        maps = maps[skip:]
        return stem + [maps[i] for i in self.out_indices]


#: arguments every vtk backbone family takes that mean nothing here (accepted when unset)
_PLUGIN_EXTRAS = ("attention_stages", "attention_args", "non_local_args", "deform_stages")
