"""The Lightning side of the ``vtk`` command: ``fit``, ``validate``, ``test`` and ``predict``
through Lightning's CLI with vtk's links, defaults and checks (imported only for those
subcommands: :mod:`vtk.cli` answers ``--help``, ``list`` and ``convert`` without torch)."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from vtk.argv import config_value, option_value
from vtk.checkpoint import (
    AtomicCheckpointIO,
    check_task,
    check_writable,
    checkpoint_run_folder,
    eval_options,
    find_resume_checkpoint,
    given_model_options,
    network_differences,
    read_checkpoint,
    recipe_hyperparameters,
)
from vtk.errors import TrainingError, VTKError, find_user_error, user_message
from vtk.recipe import (
    WEIGHT_KEYS,
    check_num_classes_option,
    default_run_config,
    is_file,
    link_data_to_task,
    recipe_task_class,
    strip_weights,
)
from vtk.trainer import Trainer as VTKTrainer

log = logging.getLogger("vtk")


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
        recipe = config_value(sys.argv)
        if recipe is not None:
            file = recipe if is_file(recipe) else None
            parser.set_defaults(default_run_config(file, recipe_task_class(recipe)))
        parser.add_argument(
            "--scale_lr_from",
            type=int | None,
            default=None,
            help="the total batch the recipe's LR is for (e.g. 16 for the COCO recipes): the LR "
            "is scaled linearly to this run's batch_size x processes x accumulate_grad_batches.",
        )
        parser.add_argument(
            "--time_budget",
            type=float | None,
            default=None,
            help="vtk fit: minutes to train for: after each epoch the number of epochs and the "
            "LR schedule are fitted to the time left (as ultralytics' time=), and training "
            "stops at the budget.",
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
        # the data normalises as the weights were trained, or as the checkpoint's run did
        ckpt = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        saved = None
        if ckpt and is_file(ckpt):
            saved = (read_checkpoint(ckpt).get("hyper_parameters") or {}).get("input_spec")
        if hasattr(self.model, "normalise_data_as_weights"):
            self.model.normalise_data_as_weights(self.datamodule, saved)
        # not a model hyper-parameter: with --ckpt_path, Lightning rebuilds the model from the
        # checkpoint's hyper-parameters, which would override it
        if self.subcommand is not None:
            self.model.output_dir = self.config[self.subcommand].get("output_dir")
            self.model.lr_base_batch = self.config[self.subcommand].get("scale_lr_from")
            self.model.fast_predict = bool(self.config[self.subcommand].get("fast", True))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        global _TRAINER
        trainer = _TRAINER = super().instantiate_trainer(**kwargs)
        continued = getattr(self, "_continued_run", None)
        if continued is not None and trainer.is_global_zero:
            _keep_metrics_until(trainer, *continued)
        minutes = self.config[self.subcommand].get("time_budget") if self.subcommand else None
        if minutes:
            from vtk.budget import TimeBudget

            trainer.callbacks.insert(0, TimeBudget(minutes))  # before the checkpoints
        if self.subcommand == "fit":
            from vtk.callbacks import Curves

            trainer.callbacks.append(Curves())
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
        self._eval_options = eval_options(config.model)
        self._given_model_options = given_model_options(config, sys.argv)
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
            # and so is every model option written on the command line (a detector's
            # score_thresh, an optimiser's lr on resume): never silently replaced
            for key, value in getattr(self, "_given_model_options", {}).items():
                self.config[sub][key] = value
            if sub != "fit":
                self._evaluate_in_the_run_folder(self.config[sub])
            else:
                self._continue_in_the_run_folder(self.config[sub])

    def before_fit(self) -> None:
        """Stop before training when the run folder cannot be written or its disk lacks room
        for one checkpoint (weights and optimiser state: about three times the weights)."""
        trainer = self.trainer
        folder = trainer.log_dir or trainer.default_root_dir
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        if trainer.is_global_zero:
            check_writable(folder, needed_bytes=3 * weights)
        # the folders this fit creates: removed again if it fails before its first step
        self._new_folders = [p for p in (Path(folder), *Path(folder).parents) if not p.exists()]

    def fit(self, model: LightningModule, **kwargs: Any) -> None:
        try:
            self.trainer.fit(model, **kwargs)
        except BaseException:
            if self.trainer.global_step == 0 and self.trainer.is_global_zero:
                _remove_unused(getattr(self, "_new_folders", []))
            raise
        if self.trainer.is_global_zero and not self.trainer.fast_dev_run:
            from vtk.callbacks import fit_summary

            log.info(fit_summary(self.trainer))

    def _default_logger(self, config: Any) -> tuple[dict[str, Any], bool]:
        """The run's logger config, and whether it is vtk's default (a CSV logger in
        ``runs/<recipe>``): only then does vtk choose the folder a run writes into."""
        recipe = config_value(sys.argv)
        default = default_run_config(recipe, None)["trainer.logger"] if recipe else None
        logger = config.trainer.get("logger")
        logger = logger.as_dict() if hasattr(logger, "as_dict") else logger
        args = (logger.get("init_args") or {}) if isinstance(logger, dict) else {}
        is_default = (
            default is not None
            and isinstance(logger, dict)
            and logger.get("class_path") == default["class_path"]
            and all(args.get(k) == v for k, v in default["init_args"].items())
        )
        return (default or {}), is_default

    def _continue_in_the_run_folder(self, config: Any) -> None:
        """``vtk fit --ckpt_path runs/<recipe>/version_N/checkpoints/last.ckpt`` continues in
        ``version_N``: its checkpoints' folder is the same, so Lightning restores which was
        the best (the best stays the best of the whole run), and its metrics.csv goes on from
        the checkpoint's step (rows logged after it, by the run that was stopped, are dropped;
        :meth:`instantiate_trainer` does that). With vtk's default logger only."""
        run = checkpoint_run_folder(config.ckpt_path)
        default, is_default = self._default_logger(config)
        if run is None or not is_default:
            return
        checkpoint = read_checkpoint(config.ckpt_path)
        for state in (checkpoint.get("callbacks") or {}).values():
            # the folder as the run named it (relative or not): Lightning restores a checkpoint
            # callback's best only when its folder is named the same
            saved = Path(str((state or {}).get("dirpath") or ""))
            if saved.name == "checkpoints" and saved.exists() and saved.samefile(run / saved.name):
                run = saved.parent
                break
        config.trainer.logger = {
            "class_path": default["class_path"],
            "init_args": {"save_dir": str(run.parent.parent), "name": run.parent.name,
                          "version": run.name},
        }  # fmt: skip
        self._continued_run = (run, checkpoint.get("global_step", 0))

    def _evaluate_in_the_run_folder(self, config: Any) -> None:
        """``vtk test/validate/predict --ckpt_path runs/<recipe>/version_N/checkpoints/X.ckpt``
        writes into that run's folder (``test/``, ``validate/``, then ``test_2/`` ... on repeats;
        ``predictions/``), not into a new ``version_N+1`` beside it. Only with vtk's default
        logger; a recipe's own logger decides for itself."""
        sub = self.config.subcommand
        run = checkpoint_run_folder(config.ckpt_path)
        recipe = config_value(sys.argv)
        if run is None or recipe is None or not is_file(recipe):  # vtk predict CKPT: its own
            return
        default, is_default = self._default_logger(config)
        if not is_default:
            return
        if sub == "predict":
            config.trainer.logger = False
            config.trainer.default_root_dir = str(run)
            return
        name, n = sub, 1
        while (run / name).exists():
            n += 1
            name = f"{sub}_{n}"
        config.trainer.logger = {
            "class_path": default["class_path"],
            "init_args": {"save_dir": str(run), "name": "", "version": name},
        }
        if rank_zero_only.rank == 0:
            log.info("writing this %s into the checkpoint's run folder: %s", sub, run / name)

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
        saved = read_checkpoint(path).get("hyper_parameters", {})
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


def _remove_unused(folders: list[Path]) -> None:
    """Remove the run folders a fit created (deepest first) if it failed before training: they
    hold at most its config and empty logs, never a checkpoint."""
    import shutil

    for folder in folders:
        if not folder.is_dir() or any(folder.rglob("*.ckpt")):
            return
        if any(p for p in folder.iterdir() if p.is_dir() and p.name not in ("checkpoints",)):
            return
        shutil.rmtree(folder, ignore_errors=True)


def _keep_metrics_until(trainer: Trainer, run: Path, step: int) -> None:
    """The run's metrics.csv up to ``step`` (the checkpoint's), kept through the CSV logger's
    start, which would delete it; later rows (logged after the checkpoint by the run that was
    stopped) are dropped, and the resumed run appends to it."""
    import csv

    path = run / "metrics.csv"
    if not path.is_file() or not trainer.loggers:
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if r.get("step") and int(r["step"]) < step]
    writer = trainer.loggers[0].experiment  # creating it deletes the old file
    writer.metrics_keys = sorted(k for k in header if k)
    with open(writer.metrics_file_path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=writer.metrics_keys)
        out.writeheader()
        out.writerows(rows)
    log.info(
        "continuing in %s: its best checkpoint stays the best of the whole run; metrics.csv "
        "kept up to step %d (%d rows)", run, step, len(rows),
    )  # fmt: skip


#: the data options a prediction uses (the rest describe training data it does not read)
PREDICT_DATA_OPTIONS = (
    "predict_dir",
    "batch_size",
    "val_batch_size",
    "num_workers",
    "on_bad_image",
)


def checkpoint_only_predict(argv: list[str], recipe: str | None = None) -> None:
    """``vtk predict CKPT [DIR] ...`` -> ``vtk predict --config <from the checkpoint> --ckpt_path
    CKPT [--data.predict_dir DIR] ...``: the model as the checkpoint's recipe built it, and a
    :class:`~vtk.data.PredictFolderDataModule` with the checkpoint's classes, ids and input
    spec, so no training data is read. Predictions go to ``./predictions`` (or --output_dir).

    With ``recipe`` (``vtk predict RECIPE --ckpt_path CKPT ...``) the same, keeping the recipe's
    trainer settings; predictions go to the checkpoint's run folder when it is in one. Data
    options other than :data:`PREDICT_DATA_OPTIONS` are left out, with a log line."""
    import yaml

    rest = argv[3:]
    if recipe is None:
        path = Path(argv[2])
    else:
        rest, path = _without_recipe_and_checkpoint(argv[2:])
    hparams = recipe_hyperparameters(
        path, "give the recipe too: vtk predict RECIPE --ckpt_path CKPT --data.predict_dir DIR."
    )
    if recipe is not None:  # a checkpoint of another task than the recipe's: refused by name
        check_task(path, {"hyper_parameters": hparams}, recipe_task_class(recipe))
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    strip_weights(init_args)
    names = init_args.get("class_names")
    trainer: dict[str, Any] = {"logger": False, "default_root_dir": "."}
    if recipe is not None:
        own = (yaml.safe_load(Path(recipe).read_text()) or {}).get("trainer") or {}
        run = checkpoint_run_folder(path)
        trainer = {
            **{k: v for k, v in own.items() if k not in ("logger", "callbacks")},
            "logger": False,
            "default_root_dir": str(run or "."),
        }
        rest = _prediction_data_options(rest)
    config = {
        "trainer": trainer,
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
    if rest and not rest[0].startswith("-"):  # vtk predict CKPT DIR
        rest = ["--data.predict_dir", *rest]
    argv[2:] = ["--config", yaml.safe_dump(config), "--ckpt_path", str(path), *rest]


def checkpoint_only_evaluate(argv: list[str]) -> None:
    """``vtk test CKPT ...`` / ``vtk validate CKPT ...`` -> ``vtk test --config RUN/config.yaml
    --ckpt_path CKPT --trainer.logger <RUN/test> ...``: the run's own recipe, data options and
    splits (as ``vtk fit`` resolved and saved them), results in the run's ``test/`` (``test_2/``
    ... on repeats). Options after the checkpoint override the run's as usual."""
    sub, path = argv[1], Path(argv[2])
    run = checkpoint_run_folder(path)
    if run is None or not (run / "config.yaml").is_file():
        raise VTKError(
            f"{path} is not in a run folder with the config.yaml vtk fit writes "
            f"(runs/<recipe>/version_N/checkpoints/); give the recipe and its data instead: "
            f"vtk {sub} RECIPE --ckpt_path {path} --data.root DIR"
        )
    name, n = sub, 1
    while (run / name).exists():
        n += 1
        name = f"{sub}_{n}"
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    trainer = config.get("trainer") or {}
    trainer["callbacks"] = [  # fit's checkpointing has nothing to do in an evaluation
        c for c in trainer.get("callbacks") or []
        if not str(c.get("class_path", "")).endswith("ModelCheckpoint")
    ]  # fmt: skip
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(run), "name": "", "version": name},
    }
    config["trainer"] = trainer
    argv[2:] = [
        "--config", yaml.safe_dump(config), "--ckpt_path", str(path),
        *argv[3:],
    ]  # fmt: skip
    if rank_zero_only.rank == 0:
        log.info("%s of %s with its run's config: writing into %s", sub, path, run / name)


def _without_recipe_and_checkpoint(args: list[str]) -> tuple[list[str], Path]:
    """The arguments without the recipe (``--config PATH``) and ``--ckpt_path``, and the
    checkpoint."""
    out: list[str] = []
    path = None
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in ("--config", "--ckpt_path") and i + 1 < len(args):
            if arg == "--ckpt_path":
                path = Path(args[i + 1])
            skip = True
        elif arg.startswith("--ckpt_path="):
            path = Path(arg.split("=", 1)[1])
        elif not arg.startswith("--config="):
            out.append(arg)
    assert path is not None
    return out, path


def _prediction_data_options(args: list[str]) -> list[str]:
    """``args`` without the data options a prediction does not use (each named in the log)."""
    out: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key = arg.split("=", 1)[0]
        takes_value = "=" not in arg and i + 1 < len(args)
        if key == "--data" or key.startswith("--data."):
            option = key.removeprefix("--data.").removeprefix("init_args.")
            if key != "--data" and option in PREDICT_DATA_OPTIONS:
                out += args[i : i + 1 + takes_value]
            else:
                dropped.append(key)
            i += 1 + takes_value
            continue
        out.append(arg)
        i += 1
    if dropped:
        log.info(
            "prediction reads only the images of --data.predict_dir, with the checkpoint's "
            "classes and input spec: left out %s",
            ", ".join(dropped),
        )
    return out


def run() -> None:
    """Lightning's CLI on ``sys.argv`` (already rewritten by :func:`vtk.cli.rewrite_recipe_argv`);
    vtk's own errors and Lightning's configuration errors end as one ``vtk: error:`` line."""
    # vtk's epoch-level metrics are torchmetrics objects, synchronised across processes
    # before they are logged; Lightning cannot tell and would advise sync_dist for each
    warnings.filterwarnings(
        "ignore", message=r"It is recommended to use `self.log\('(val|test)/(AP|IoU|mIoU|acc)"
    )
    # frozen stages (frozen_stages, norm_eval, FrozenBatchNorm2d) stay in eval mode on purpose;
    # the task logs how many modules that is
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    if sys.argv[1:2] != ["fit"]:  # evaluating needs none of the callbacks that trained it (EMA)
        warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint")
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    # a resumed run continues in its folder, whose metrics.csv vtk keeps (_keep_metrics_until)
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not")
    # seed_everything: true (vtk's default) without a number: Lightning seeds 0 and says so as
    # a warning; the run is reproducible, nothing to act on
    warnings.filterwarnings("ignore", message=r"No seed found, seed set to")
    # between Lightning and this torch, not the user's to act on
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for handler in logging.getLogger("lightning.pytorch").handlers:  # advertisements
        handler.addFilter(_drop_tips)
    try:
        check_num_classes_option(sys.argv)
        _check_checkpoint_argument(sys.argv)
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    try:
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
        if isinstance(user_error, TrainingError) and rank_zero_only.rank != 0:
            raise SystemExit(1) from None  # every process stops at that step; rank 0 says why
        if user_error is not None:
            _end_progress_line()
            raise SystemExit(f"vtk: error: {user_message(user_error)}") from None
        if _lightning_check(e):  # one line, from the first process only
            message = " ".join(str(e).split())
            raise SystemExit(f"vtk: error: {message}" if rank_zero_only.rank == 0 else 1) from None
        raise


#: the run's trainer, once built (for :func:`_end_progress_line`)
_TRAINER: Trainer | None = None


def _end_progress_line() -> None:
    """End the progress bar's line before an error line: a bar stopped mid-epoch leaves its
    last ``\r``-drawn line open (``train/loss=1.690]vtk: error: ...``)."""
    trainer = _TRAINER
    bar = getattr(trainer, "progress_bar_callback", None) if trainer is not None else None
    if bar is not None and getattr(bar, "is_enabled", False) and trainer.global_step > 0:
        sys.stdout.write("\n")  # the bar's stream (Lightning's tqdm bars write to stdout)
        sys.stdout.flush()


def _check_checkpoint_argument(argv: list[str]) -> None:
    """``--ckpt_path FILE`` read as data before Lightning reads it: a file that is not a vtk
    checkpoint of the recipe's task is one line naming it (:func:`vtk.checkpoint.read_checkpoint`)."""
    path = option_value(argv, "--ckpt_path")
    if path is None or path in ("last", "auto", "null", "None", ""):
        return
    recipe = config_value(argv)
    check_task(path, read_checkpoint(path), recipe_task_class(recipe) if recipe else None)


def _drop_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


def _lightning_check(error: BaseException) -> bool:
    """Whether ``error`` is one of Lightning's checks of the run's arguments (a
    ``MisconfigurationException``, or a ``ValueError`` raised by Lightning's own code, such as
    ``val_check_interval`` past the epoch's end), not a failure inside the run."""
    if isinstance(error, MisconfigurationException):
        return True
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path('lightning', 'pytorch')}" in tb.tb_frame.f_code.co_filename
