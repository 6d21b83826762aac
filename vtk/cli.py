"""The ``vtk`` command: Lightning's CLI, driven by YAML recipes.

    vtk fit recipes/demo_segmentation.yaml
    vtk fit recipes/deeplab_resnet101_aspp.yaml --trainer.devices 8 --data.batch_size 2
    vtk test recipes/demo_segmentation.yaml --ckpt_path runs/.../checkpoints/last.ckpt
    vtk fit recipes/demo_segmentation.yaml --print_config
    vtk list                       # backbones, plug-ins, necks, heads, tasks, data, recipes

A bare recipe path after the subcommand means ``--config RECIPE``; any key can be overridden
on the command line. ``num_classes`` and ``class_names`` are said once, by the data, and linked
to the model.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from vtk.checkpoint import AtomicCheckpointIO, find_resume_checkpoint, network_differences
from vtk.errors import VTKError

log = logging.getLogger("vtk")

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class SaveFitConfig(SaveConfigCallback):
    """Save the resolved recipe as ``config.yaml`` beside the checkpoints of a ``fit`` run.

    ``test`` and ``predict`` write no checkpoints; without a logger they would drop the file
    into the current folder.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class VTKCLI(LightningCLI):
    """LightningCLI with vtk's links between the data and the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data.num_classes",
            "model.init_args.model.init_args.num_classes",
            apply_on="instantiate",
        )
        parser.link_arguments(
            "data.class_names", "model.init_args.class_names", apply_on="instantiate"
        )
        parser.add_argument(
            "--scale_lr_from",
            type=int | None,
            default=None,
            help="the total batch the recipe's LR is for (e.g. 16 for the COCO recipes): the LR "
            "is scaled linearly to this run's batch_size x processes x accumulate_grad_batches.",
        )
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="vtk predict: where to write the predictions (default: <run dir>/predictions).",
        )

    def after_instantiate_classes(self) -> None:
        # not a model hyper-parameter: with --ckpt_path, Lightning rebuilds the model from the
        # checkpoint's hyper-parameters, which would override it
        if self.subcommand is not None:
            self.model.output_dir = self.config[self.subcommand].get("output_dir")
            self.model.lr_base_batch = self.config[self.subcommand].get("scale_lr_from")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path last`` / ``auto`` -> the file; refuse another recipe's checkpoint for fit.

        Then Lightning's own step: the model config is replaced by the checkpoint's.
        """
        sub = self.config.get("subcommand")
        if sub is not None:
            config = self.config[sub]
            if config.get("ckpt_path") in ("last", "auto"):
                config.ckpt_path = self._resume_path(config)
            if sub == "fit" and config.get("ckpt_path"):
                self._check_same_network(config)
        super()._parse_ckpt_path()
        if sub is not None and self.config[sub].get("ckpt_path"):
            # the checkpoint's tensors replace pretrained weights: do not fetch them again
            model = self.config[sub].model
            for key in list(model.keys()):
                if key.rsplit(".", 1)[-1] == "weights":
                    model[key] = None

    def _resume_path(self, config: Any) -> str | None:
        trainer = config.trainer.as_dict() if hasattr(config.trainer, "as_dict") else {}
        found, folders = find_resume_checkpoint(
            trainer.get("logger"), trainer.get("callbacks"), trainer.get("default_root_dir")
        )
        where = ", ".join(str(f) for f in folders[:3]) or "(no run folders)"
        if found is not None:
            if rank_zero_only.rank == 0:
                log.info("resuming from %s", found)
            return str(found)
        if config.ckpt_path == "auto":
            if rank_zero_only.rank == 0:
                log.info("no checkpoint to resume in %s: starting a new run", where)
            return None
        raise SystemExit(
            f"vtk: error: --ckpt_path last: no last checkpoint in {where}, nothing to resume. "
            "Leave out --ckpt_path to start a new run, or use --ckpt_path auto to resume when "
            "there is a checkpoint and start a new run otherwise."
        )

    def _check_same_network(self, config: Any) -> None:
        path = Path(config.ckpt_path)
        if not path.is_file():
            raise SystemExit(f"vtk: error: checkpoint {path} does not exist.")
        saved = torch.load(path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        saved_net = (saved.get("model") or {}) if isinstance(saved, dict) else {}
        model = config.model.as_dict() if hasattr(config.model, "as_dict") else {}
        current_net = (model.get("init_args") or {}).get("model") or {}
        if not isinstance(saved_net, dict) or not saved_net or not current_net:
            return
        diffs = network_differences(saved_net, current_net, ignore=("num_classes", "weights"))
        if diffs:
            listed = "; ".join(
                f"model.{k}: {a!r} in the checkpoint, {b!r} here" for k, a, b in diffs[:5]
            )
            raise SystemExit(
                f"vtk: error: {path} was saved by a different model than this recipe builds, so "
                f"training cannot resume from it: {listed}"
                f"{f' (and {len(diffs) - 5} more)' if len(diffs) > 5 else ''}. Resume with the "
                "recipe that made it, or start from its weights with the model's weights argument."
            )


def rewrite_recipe_argv(argv: list[str]) -> None:
    """``vtk fit RECIPE ...`` -> ``vtk fit --config RECIPE ...``, in place.

    Done on ``sys.argv`` itself because Lightning's DDP launcher starts the other ranks with
    the same command line; applied twice it changes nothing (the path then follows --config).
    """
    if len(argv) > 2 and argv[1] in SUBCOMMANDS and not argv[2].startswith("-"):
        recipe = Path(argv[2])
        if not recipe.is_file():
            known = sorted(str(p) for p in Path("recipes").glob("*.yaml"))
            hint = f" Recipes here: {', '.join(known)}." if known else ""
            raise SystemExit(f"vtk: error: recipe {recipe} does not exist.{hint}")
        argv.insert(2, "--config")


def _find_user_error(error: BaseException) -> VTKError | None:
    """A VTKError behind ``error``: jsonargparse wraps errors raised while it instantiates."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, VTKError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _user_message(error: VTKError) -> str:
    """The message alone, also when a DataLoader worker wrapped it in its traceback."""
    text = str(error)
    if "Original Traceback" in text:
        tail = text.rstrip().rsplit(f"{type(error).__name__}: ", 1)
        text = tail[-1]
    return text


def _setup_logging() -> None:
    logger = logging.getLogger("vtk")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vtk: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def list_components(recipes_dir: str | Path = "recipes") -> str:
    """What ``vtk list`` prints: backbones, plug-ins, necks, heads, tasks, data, recipes."""
    import vtk.data
    import vtk.models.heads
    import vtk.models.necks
    import vtk.tasks
    from vtk.models.attention import ATTENTION
    from vtk.models.backbones import BACKBONES
    from vtk.models.layers import DEFORM_CONV

    lines = ["Backbones (class_path vtk.models.backbones.<Family>, init_args {arch: <name>}):"]
    families: dict[str, list[str]] = {}
    for name, family in BACKBONES.items():
        families.setdefault(family.__name__, []).append(name)
    lines += [f"  {family}: {', '.join(names)}" for family, names in families.items()]
    lines += [
        "Plug-ins (backbone arguments):",
        f"  attention: {', '.join(ATTENTION)}   (+ attention_stages, attention_args)",
        "  non_local: {stage: [block, ...]}   (embedded Gaussian; + non_local_args)",
        f"  deform: {', '.join(DEFORM_CONV)}   (+ deform_stages)",
        "  blur_pool: filter size 2-7   (anti-aliased downsampling)",
        "  stn: true   (spatial transformer before the stem)",
        "Models (vtk.models, a task's model): Classifier, Segmenter, FCOS, RetinaNet",
        f"Necks (vtk.models.necks): {', '.join(vtk.models.necks.__all__)}",
        f"Heads (vtk.models.heads): {', '.join(vtk.models.heads.__all__)}",
        f"Tasks (vtk.tasks): {', '.join(n for n in vtk.tasks.__all__ if n != 'VisionTask')}",
        "Data (vtk.data): " + ", ".join(n for n in vtk.data.__all__ if n.endswith("DataModule")),
    ]
    recipes = sorted(Path(recipes_dir).glob("*.yaml"))
    lines.append(f"Recipes ({recipes_dir}/):" if recipes else f"Recipes: none in {recipes_dir}/")
    for path in recipes:
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")),
            "",
        )
        lines.append(f"  {path.name}: {first}")
    return "\n".join(lines)


def main() -> None:
    _setup_logging()
    # vtk's epoch-level metrics are torchmetrics objects, synchronised across processes
    # before they are logged; Lightning cannot tell and would advise sync_dist for each
    warnings.filterwarnings(
        "ignore", message=r"It is recommended to use `self.log\('(val|test)/(AP|IoU|mIoU)"
    )
    if sys.argv[1:2] == ["list"]:
        print(list_components())
        return
    if sys.argv[1:2] == ["analyze"]:
        from vtk.analysis import analyze

        try:
            print(analyze(sys.argv[2:]))
        except VTKError as e:
            raise SystemExit(f"vtk: error: {e}") from None
        return
    rewrite_recipe_argv(sys.argv)
    try:
        VTKCLI(
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,  # the tasks take optimizer / lr_scheduler themselves
            save_config_callback=SaveFitConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "yaml"},
        )
    except Exception as e:
        user_error = _find_user_error(e)
        if user_error is None:
            raise
        raise SystemExit(f"vtk: error: {_user_message(user_error)}") from None


if __name__ == "__main__":
    main()
