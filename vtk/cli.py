"""The ``vtk`` command: Lightning's CLI, driven by YAML recipes.

    vtk fit demo_segmentation                                   # an installed recipe, by name
    vtk fit recipes/deeplab_resnet101_aspp.yaml --trainer.devices 8 --data.batch_size 2
    vtk test demo_segmentation --ckpt_path runs/.../checkpoints/last.ckpt
    vtk predict runs/.../checkpoints/last.ckpt my_images/   # the checkpoint alone: no recipe, no data
    vtk fit demo_segmentation --print_config
    vtk list                       # backbones, plug-ins, necks, heads, tasks, data, recipes
    vtk analyze resnet50_imagenet  # per stage: stride, channels, parameters, MACs, receptive field
    vtk convert yolo data.yaml --split train --out train.json   # VOC XML, YOLO txt -> COCO JSON
    vtk export runs/.../last.ckpt --format onnx --out model.onnx  # folded, preprocessing inside

A recipe after the subcommand (a path, or the name of a recipe installed with vtk) means
``--config RECIPE``; any key can be overridden on the command line. What the data says once
(``num_classes``, ``class_names``, ``category_ids``, ``input_spec``) is linked to the task
(:func:`vtk.recipe.link_data_to_task`).
"""

from __future__ import annotations

import importlib
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

from vtk.checkpoint import (
    AtomicCheckpointIO,
    find_resume_checkpoint,
    network_differences,
    recipe_hyperparameters,
)
from vtk.errors import VTKError, find_user_error, user_message
from vtk.recipe import (
    WEIGHT_KEYS,
    default_run_config,
    find_recipe,
    installed_recipes,
    link_data_to_task,
    recipe_task_class,
    recipes_dir,
    strip_weights,
)
from vtk.trainer import Trainer as VTKTrainer

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
        link_data_to_task(parser)
        # vtk's logger and checkpoints, unless the recipe (or the command line) sets its own
        recipe = _config_argument(sys.argv)
        if recipe is not None:
            file = recipe if Path(recipe).is_file() else None
            parser.set_defaults(default_run_config(file, recipe_task_class(recipe)))
        parser.add_argument(
            "--scale_lr_from",
            type=int | None,
            default=None,
            help="the total batch the recipe's LR is for (e.g. 16 for the COCO recipes): the LR "
            "is scaled linearly to this run's batch_size x processes x accumulate_grad_batches.",
        )
        parser.add_argument(
            "--fast",
            type=bool,
            default=True,
            help="vtk predict: BatchNorm folded into the convolutions and channels_last (the "
            "same results up to float rounding); false runs the network as trained.",
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
            self.model.fast_predict = bool(self.config[self.subcommand].get("fast", True))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Lightning's parse, then ``--ckpt_path last`` / ``auto`` -> the file, and another
        recipe's checkpoint refused for ``fit`` (before Lightning reads the checkpoint's config)."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if sub is None:
            return
        config = self.config[sub]
        self._eval_options = _eval_options(config.model)
        if config.get("ckpt_path") in ("last", "auto"):
            config.ckpt_path = self._resume_path(config)
        if sub == "fit" and config.get("ckpt_path"):
            self._check_same_network(config)

    def before_instantiate_classes(self) -> None:
        # the checkpoint's tensors replace pretrained weights: do not fetch them again
        sub = self.config.get("subcommand")
        if sub is not None and self.config[sub].get("ckpt_path"):
            strip_weights(self.config[sub].model)
            # Lightning put the checkpoint's hyper-parameters over the recipe's; how to evaluate
            # is this run's choice (mmsegmentation's test config, a --tta flag), as given
            for key, value in getattr(self, "_eval_options", {}).items():
                self.config[sub].model.init_args[key] = value

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
        diffs = network_differences(saved_net, current_net, ignore=("num_classes", *WEIGHT_KEYS))
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


def _eval_options(model: Any) -> dict[str, Any]:
    """The task's :attr:`~vtk.tasks.VisionTask.eval_options` as this run's config sets them."""
    class_path = model.get("class_path") if model is not None else None
    init_args = model.get("init_args") if model is not None else None
    if not class_path or init_args is None:
        return {}
    module, _, name = class_path.rpartition(".")
    try:
        task = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return {}
    return {k: init_args[k] for k in getattr(task, "eval_options", ()) if k in init_args}


def _config_argument(argv: list[str]) -> str | None:
    """The value of the last ``--config`` of a command line (a recipe path or YAML text)."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    values += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    return values[-1] if values else None


def rewrite_recipe_argv(argv: list[str]) -> None:
    """``vtk fit RECIPE ...`` -> ``vtk fit --config PATH ...``, in place, where RECIPE is a path
    or an installed recipe's name (``--config NAME`` is resolved the same way).

    Done on ``sys.argv`` itself because Lightning's DDP launcher starts the other ranks with
    the same command line; applied twice it changes nothing (the path then follows --config).
    """
    if len(argv) < 3 or argv[1] not in SUBCOMMANDS:
        return
    if argv[1] == "predict" and argv[2].endswith(".ckpt"):
        _checkpoint_only_predict(argv)
        return
    if not argv[2].startswith("-"):
        argv.insert(2, "--config")
    for i, arg in enumerate(argv[:-1]):
        if arg == "--config" and not Path(argv[i + 1]).is_file():
            argv[i + 1] = str(find_recipe(argv[i + 1]))


def _checkpoint_only_predict(argv: list[str]) -> None:
    """``vtk predict CKPT [DIR] ...`` -> ``vtk predict --config <from the checkpoint> --ckpt_path
    CKPT [--data.predict_dir DIR] ...``: the model as the checkpoint's recipe built it, and a
    :class:`~vtk.data.PredictFolderDataModule` with the checkpoint's classes, ids and input
    spec, so no training data is read. Predictions go to ``./predictions`` (or --output_dir)."""
    import yaml

    path = Path(argv[2])
    hparams = recipe_hyperparameters(
        path, "give the recipe too: vtk predict RECIPE --ckpt_path CKPT --data.predict_dir DIR."
    )
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    strip_weights(init_args)
    names = init_args.get("class_names")
    config = {
        "trainer": {"logger": False, "default_root_dir": "."},
        "model": {"class_path": hparams["_class_path"], "init_args": init_args},
        "data": {
            "class_path": "vtk.data.PredictFolderDataModule",
            "init_args": {
                "num_classes": len(names) if names else 1,
                **{
                    k: init_args.get(k)
                    for k in ("class_names", "category_ids", "input_spec", "ignore_index")
                },
            },
        },
    }
    rest = argv[3:]
    if rest and not rest[0].startswith("-"):  # vtk predict CKPT DIR
        rest = ["--data.predict_dir", *rest]
    argv[2:] = ["--config", yaml.safe_dump(config), "--ckpt_path", str(path), *rest]


def _setup_logging() -> None:
    """The command prints vtk's messages as ``vtk: ...`` on stderr. The library only logs (to
    ``logging.getLogger("vtk")``); records still propagate to the root logger's handlers."""
    logger = logging.getLogger("vtk")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vtk: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def list_components() -> str:
    """What ``vtk list`` prints: backbones, plug-ins, necks, heads, tasks, data, recipes."""
    import vtk.data
    import vtk.models.heads
    import vtk.models.necks
    import vtk.tasks
    from vtk.models.attention import ATTENTION
    from vtk.models.backbones import BACKBONES
    from vtk.models.backbones.base import FROM_C3
    from vtk.models.layers import DEFORM_CONV

    lines = ["Backbones (class_path vtk.models.backbones.<Family>, init_args {arch: <name>}):"]
    families: dict[str, list[str]] = {}
    for name, family in BACKBONES.items():
        families.setdefault(family.__name__, []).append(name)
    lines += [f"  {family}: {', '.join(names)}" for family, names in families.items()]
    lines += [
        "Plug-ins (backbone arguments; default stages as the papers' configurations):",
        f"  attention: {', '.join(n for n in ATTENTION if n not in FROM_C3)} in every stage, "
        f"{', '.join(n for n in ATTENTION if n in FROM_C3)} in the stages from c3 (stride 8) on: "
        "ResNet, DenseNet 1-3, VGG 2-4   (+ attention_stages, attention_args)",
        "  non_local: {stage: [block, ...]}   (embedded Gaussian, scaled; + non_local_args)",
        f"  deform: {', '.join(DEFORM_CONV)} in the stages from c3 on   (+ deform_stages)",
        "  blur_pool: filter size 2-7   (every downsampling anti-aliased)",
        "  stn: true   (spatial transformer before the stem)",
        "Models (vtk.models, a task's model): Classifier, Segmenter, FCOS, RetinaNet, SSD "
        "(rfb: true for RFB Net)",
        f"Necks (vtk.models.necks): {', '.join(vtk.models.necks.__all__)}",
        f"Heads (vtk.models.heads): {', '.join(vtk.models.heads.__all__)}",
        f"Tasks (vtk.tasks): {', '.join(n for n in vtk.tasks.__all__ if n != 'VisionTask')}",
        "Data (vtk.data): " + ", ".join(n for n in vtk.data.__all__ if n.endswith("DataModule")),
    ]
    lines.append(f"Recipes (installed in {recipes_dir()}; vtk fit NAME):")
    for path in installed_recipes():
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")),
            "",
        )
        lines.append(f"  {path.stem}: {first}")
    return "\n".join(lines)


def main() -> None:
    _setup_logging()
    # vtk's epoch-level metrics are torchmetrics objects, synchronised across processes
    # before they are logged; Lightning cannot tell and would advise sync_dist for each
    warnings.filterwarnings(
        "ignore", message=r"It is recommended to use `self.log\('(val|test)/(AP|IoU|mIoU|acc)"
    )
    if sys.argv[1:2] == ["list"]:
        print(list_components())
        return
    if sys.argv[1:2] == ["export"]:
        from vtk.export import main as export

        export(sys.argv[2:])
        return
    if sys.argv[1:2] == ["convert"]:
        from vtk.data.convert import main as convert

        convert(sys.argv[2:])
        return
    if sys.argv[1:2] == ["analyze"]:
        from vtk.analysis import analyze

        try:
            print(analyze(sys.argv[2:]))
        except VTKError as e:
            raise SystemExit(f"vtk: error: {e}") from None
        return
    try:
        rewrite_recipe_argv(sys.argv)
        VTKCLI(
            trainer_class=VTKTrainer,  # Lightning's, with precision: auto
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,  # the tasks take optimizer / lr_scheduler themselves
            save_config_callback=SaveFitConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "yaml"},
        )
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None:
            raise
        raise SystemExit(f"vtk: error: {user_message(user_error)}") from None


if __name__ == "__main__":
    main()
