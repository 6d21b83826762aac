"""Recipes: one YAML file says the trainer, the task (with its network) and the data.

This module is the one place where a recipe becomes objects; the ``vtk`` command, ``vtk
analyze``, ``vtk.load`` and the tools all go through it::

    from vtk.recipe import Recipe

    recipe = Recipe.load("demo_segmentation", ["--data.crop_size", "64"])
    datamodule = recipe.datamodule()            # the data alone
    task, datamodule = recipe.build()           # both, num_classes etc. linked from the data
    network = recipe.network(num_classes=21)    # the task's network alone

A recipe is named by a path, or by the name of a recipe installed with vtk
(``demo_segmentation``, ``deeplab_resnet101_aspp``; ``vtk list`` prints them): ``vtk fit
demo_segmentation`` works from any folder. Overrides are command-line style, as for ``vtk``
(``--data.KEY VALUE``, ``--model.init_args.model.init_args.backbone.init_args.arch resnet34``).

What the data says once is linked to the task here (:func:`link_data_to_task`):
``num_classes`` (to the network), ``class_names``, ``category_ids``, ``input_spec`` and, for
segmentation, ``ignore_index`` (a link whose data has no such attribute, or whose task takes no
such argument, is skipped: only segmentation data and tasks have an ignore label).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vtk.errors import ConfigError


def recipes_dir() -> Path:
    """The folder of the recipes installed with vtk (the repository's ``recipes/``)."""
    import vtk.recipes

    return Path(vtk.recipes.__file__).parent


def installed_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.yaml"))


def find_recipe(name: str | Path) -> Path:
    """The recipe file ``name`` stands for: an existing path, or an installed recipe's name
    (with or without ``.yaml`` and a ``recipes/`` folder in front)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    installed = recipes_dir() / f"{stem}.yaml"
    if installed.is_file() and len(path.parts) <= 2 and path.parent.name in ("", "recipes"):
        return installed
    import difflib

    stems = [p.stem for p in installed_recipes()]
    close = difflib.get_close_matches(stem, stems, n=1, cutoff=0.75)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ConfigError(
        f"recipe {name} does not exist.{hint} Give the path of a YAML recipe or the name of an "
        f"installed one: {', '.join(stems)}."
    )


#: the arguments that name pretrained tensors to read (a model's ``weights``, SSD's
#: ``fc_weights``); not a loss's ``class_weights``
WEIGHT_KEYS = ("weights", "fc_weights")


def strip_weights(config: Any) -> Any:
    """``config`` with every :data:`WEIGHT_KEYS` entry set to None (nothing is downloaded or
    read).

    Used when a checkpoint's tensors replace pretrained weights, and by tools that only need
    a recipe's structure. Takes a plain dict/list config (returns a new one) or a jsonargparse
    ``Namespace`` (changed in place, its keys are dotted).
    """
    if isinstance(config, dict):
        return {k: None if k in WEIGHT_KEYS else strip_weights(v) for k, v in config.items()}
    if isinstance(config, list):
        return [strip_weights(v) for v in config]
    if hasattr(config, "keys") and hasattr(config, "__setitem__"):
        for key in list(config.keys()):
            if key.rsplit(".", 1)[-1] in WEIGHT_KEYS:
                config[key] = None
    return config


def default_run_config(recipe: str | Path | None, task_class_path: str | None) -> dict[str, Any]:
    """vtk's defaults for a run of ``recipe`` (a path, or None for no file): a CSV logger whose
    run folder is ``runs/<recipe name>/version_N``, and two checkpoints: the best on the task's
    :attr:`~vtk.tasks.VisionTask.main_metric` and the last (to resume from). A recipe that sets
    ``trainer.logger`` or ``trainer.callbacks`` replaces these (``--print_config`` shows the
    result)."""
    out: dict[str, Any] = {}
    if recipe is not None:
        out["trainer.logger"] = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "runs", "name": Path(recipe).stem},
        }
    metric, mode = _main_metric(task_class_path)
    short = metric.rsplit("/", 1)[-1].lower()
    out["trainer.callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": metric,
                "mode": mode,
                "filename": f"best-{{epoch:03d}}-{{step:06d}}-{short}{{{metric}:.4f}}",
                "auto_insert_metric_name": False,
            },
        },
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"filename": "last", "enable_version_counter": False},
        },
    ]
    return out


def is_file(value: str | Path) -> bool:
    """Whether ``value`` names an existing file (False for text that cannot be a path, such as
    the YAML that ``vtk predict CKPT`` passes as ``--config``)."""
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


def recipe_task_class(config: str | Path, key: str = "model") -> str | None:
    """The ``model.class_path`` (or ``key``'s) of a recipe (a file, or YAML text), or None."""
    import yaml

    try:
        text = Path(config).read_text() if is_file(config) else str(config)
        section = (yaml.safe_load(text) or {}).get(key)
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return section.get("class_path") if isinstance(section, dict) else None


def data_class_path(argv: list[str]) -> str | None:
    """The DataModule class a command line builds: its last ``--data CLASS`` (or
    ``--data.class_path``), else its recipe's."""
    found = None
    for i, arg in enumerate(argv[:-1]):
        if arg in ("--data", "--data.class_path") and not argv[i + 1].lstrip().startswith("{"):
            found = argv[i + 1]
    for arg in argv:
        if arg.startswith(("--data=", "--data.class_path=")):
            found = arg.split("=", 1)[1]
    if found is None:
        config = next((argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--config"), None)
        found = recipe_task_class(config, "data") if config else None
    if found and "." not in found:  # Lightning's short form: the class name alone
        found = f"vtk.data.{found}"
    return found


def check_num_classes_option(argv: list[str]) -> None:
    """``--data.num_classes`` for a DataModule that reads its classes from the data (image
    folders, a COCO file) is answered in one line saying where they come from, instead of the
    parser's usage text."""
    given = any(
        a.split("=", 1)[0] in ("--data.num_classes", "--data.init_args.num_classes") for a in argv
    )
    path = data_class_path(argv) if given else None
    if not path:
        return
    module, _, name = path.rpartition(".")
    try:
        where = getattr(importlib.import_module(module), name).classes_from
    except (ImportError, AttributeError, ValueError):
        return
    if where:
        raise ConfigError(
            f"{name} takes no num_classes: it reads its classes from {where}. Leave "
            "--data.num_classes out."
        )


def task_attribute(class_path: str | None, attribute: str, default: Any = None) -> Any:
    """A class attribute of the task at ``class_path`` (what it declares: ``main_metric``,
    ``int8_refusal``, ...), ``default`` if that class cannot be imported or has none."""
    if class_path:
        module, _, name = class_path.rpartition(".")
        try:
            return getattr(getattr(importlib.import_module(module), name), attribute)
        except (ImportError, AttributeError, ValueError):
            pass
    return default


def _main_metric(class_path: str | None) -> tuple[str, str]:
    """The ``main_metric`` of the task class at ``class_path`` (``val/loss``, min, if unknown)."""
    metric = task_attribute(class_path, "main_metric")
    return tuple(metric) if isinstance(metric, tuple | list) else ("val/loss", "min")  # type: ignore[return-value]


def link_data_to_task(parser: Any) -> None:
    """What the data says once, linked to the task when both are built (the CLI uses this too)."""
    for source, target in (
        ("data.num_classes", "model.init_args.model.init_args.num_classes"),
        ("data.class_names", "model.init_args.class_names"),
        ("data.category_ids", "model.init_args.category_ids"),
        ("data.ignore_index", "model.init_args.ignore_index"),
        ("data.input_spec", "model.init_args.input_spec"),
    ):
        parser.link_arguments(source, target, apply_on="instantiate")


def _parser() -> Any:
    from jsonargparse import ActionConfigFile
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningArgumentParser

    from vtk.trainer import Trainer  # the vtk command's (precision: auto)

    parser = LightningArgumentParser(exit_on_error=False, parser_mode="yaml")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--seed_everything", type=bool | int, default=True)
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_lightning_class_args(LightningModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True)
    link_data_to_task(parser)
    return parser


def instantiate(spec: dict[str, Any], base: type) -> Any:
    """One ``class_path`` / ``init_args`` config as an object (a subclass of ``base``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "obj", required=True)
    return parser.instantiate_classes(parser.parse_object({"obj": spec})).obj


class Recipe:
    """A parsed recipe: its file, and its config with every default filled in.

    Build with :meth:`load`. ``config`` is a plain dict (``trainer``, ``model``, ``data``).
    """

    def __init__(self, path: Path, config: dict[str, Any], parsed: Any, parser: Any) -> None:
        self.path = path
        self.config = config
        self._parsed = parsed
        self._parser = parser

    @classmethod
    def load(cls, name: str | Path, overrides: Sequence[str] = (), weights: bool = True) -> Recipe:
        """Read a recipe by path or installed name, with command-line style ``overrides``.

        ``weights=False`` sets every ``weights`` entry to None (nothing is fetched).
        """
        path = find_recipe(name)
        parser = _parser()
        parser.set_defaults(default_run_config(path, recipe_task_class(path)))
        try:
            parsed = parser.parse_args(["--config", str(path), *overrides])
        except Exception as e:  # jsonargparse's ArgumentError: a bad key or value
            raise ConfigError(f"{path}: {e}") from None
        if not weights:
            strip_weights(parsed)
        config = parsed.as_dict()
        try:
            config["model"]["init_args"]["model"]["class_path"]
        except (KeyError, TypeError):
            raise ConfigError(
                f"{path} is not a vtk recipe: it has no model.init_args.model.class_path."
            ) from None
        return cls(path, config, parsed, parser)

    def datamodule(self) -> Any:
        """The recipe's DataModule."""
        from lightning.pytorch import LightningDataModule

        return instantiate(copy.deepcopy(self.config["data"]), LightningDataModule)

    def network(self, num_classes: int) -> Any:
        """The task's network (``model.init_args.model``) for ``num_classes`` classes."""
        from torch import nn

        spec = copy.deepcopy(self.config["model"]["init_args"]["model"])
        spec.setdefault("init_args", {})["num_classes"] = num_classes
        return instantiate(spec, nn.Module)

    def build(self) -> tuple[Any, Any]:
        """``(task, datamodule)``, with what the data says linked into the task and the data
        normalising as the network's weights say (as the ``vtk`` command builds them)."""
        init = self._parser.instantiate_classes(copy.deepcopy(self._parsed))
        if hasattr(init.model, "normalise_data_as_weights"):
            init.model.normalise_data_as_weights(init.data)
        return init.model, init.data

    def task(self, num_classes: int) -> Any:
        """The task without its data: ``num_classes`` given, class names and input spec the
        task's defaults (for tools that look at the network, not the data)."""
        from lightning.pytorch import LightningModule

        spec = copy.deepcopy(self.config["model"])
        spec["init_args"]["model"].setdefault("init_args", {})["num_classes"] = num_classes
        return instantiate(spec, LightningModule)

    @property
    def name(self) -> str:
        return self.path.stem
