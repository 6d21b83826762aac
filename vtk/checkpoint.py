"""Checkpoints a run can always resume from.

* :class:`AtomicCheckpointIO` writes each checkpoint to ``<name>.partial`` and renames it into
  place, so a process killed while saving leaves the previous checkpoint whole (a rename within
  a folder is atomic; Lightning's own writer goes through a temporary file that may sit on
  another file system, where the final move is a copy).
* :func:`find_resume_checkpoint` finds what ``--ckpt_path last`` / ``auto`` mean for a recipe:
  the newest ``last*.ckpt`` of the recipe's runs, or a SLURM requeue checkpoint
  (``hpc_ckpt_*.ckpt``) in the trainer's root folder.
* :func:`recipe_hyperparameters` reads the task config a ``vtk fit`` checkpoint carries (what
  ``vtk.load`` and ``vtk predict CKPT`` rebuild the task from).
* :func:`network_differences` compares the network config saved in a checkpoint with the
  recipe's, so resuming a run with another recipe's checkpoint is refused by name.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vtk.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are write-then-rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # remote storage: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
        except OSError as e:  # a full disk, a folder made read-only during the run
            partial.unlink(missing_ok=True)
            raise CheckpointError(_write_failure(target, checkpoint, e)) from None
        os.replace(partial, target)


def _tensor_bytes(node: Any) -> int:
    import torch

    if isinstance(node, torch.Tensor):
        return node.numel() * node.element_size()
    if isinstance(node, dict):
        return sum(_tensor_bytes(v) for v in node.values())
    if isinstance(node, list | tuple):
        return sum(_tensor_bytes(v) for v in node)
    return 0


def _write_failure(target: Path, checkpoint: dict[str, Any], error: OSError) -> str:
    import shutil

    needed = _tensor_bytes(checkpoint) / 1e6
    try:
        free = f"; {shutil.disk_usage(target.parent).free / 1e6:.0f} MB are free there"
    except OSError:
        free = ""
    return (
        f"could not write the checkpoint {target} ({error.strerror or error}): it needs about "
        f"{needed:.0f} MB{free}. The partial file was removed; the run's earlier checkpoints "
        "are whole. Free some space (or give the run another folder), then resume with "
        "--ckpt_path last."
    )


def check_writable(folder: str | Path, needed_bytes: int = 0) -> None:
    """Refuse, before training, a run folder that cannot be written (read-only, a file in the
    way, no permission) or whose disk has less free space than one checkpoint needs
    (``needed_bytes``). Nothing is created: the nearest existing folder is tried with a
    temporary file."""
    import shutil
    import tempfile

    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointError(
            f"the run folder {folder} cannot be made: {existing} is a file, not a folder."
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise CheckpointError(
            f"the run folder {folder} cannot be written ({existing}: {e.strerror or e}): give "
            "the run a folder it can write (--trainer.default_root_dir DIR, or run from "
            "another folder)."
        ) from None
    free = shutil.disk_usage(existing).free
    if needed_bytes and free < needed_bytes:
        raise CheckpointError(
            f"the disk of {folder} has {free / 1e6:.0f} MB free; one checkpoint of this run "
            f"needs about {needed_bytes / 1e6:.0f} MB. Free some space or give the run another "
            "folder."
        )


def _run_folders(logger: Any, root: Path) -> list[Path]:
    """Checkpoint folders of the recipe's runs, from the (first) logger's config."""
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if not isinstance(logger, dict):  # logger: false / true / none
        return [root / "checkpoints"]
    args = logger.get("init_args") or {}
    save_dir = Path(args.get("save_dir") or root)
    name = args.get("name")
    base = save_dir / name if name else save_dir
    version = args.get("version")
    if version is not None:
        return [
            base / (version if isinstance(version, str) else f"version_{version}") / "checkpoints"
        ]
    return sorted(base.glob("*/checkpoints"))


def _candidates(folders: list[Path], root: Path) -> Iterator[Path]:
    for folder in folders:
        if folder.is_dir():
            yield from (p for p in folder.glob("last*.ckpt") if p.is_file())
    yield from root.glob("hpc_ckpt_*.ckpt")  # Lightning's SLURM requeue checkpoint


def checkpoint_run_folder(ckpt_path: str | Path | None) -> Path | None:
    """The run folder (``runs/<recipe>/version_N``) a ``vtk fit`` checkpoint was saved in, or
    None for a checkpoint kept anywhere else."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.parent.name != "checkpoints" or not (
        (run / "hparams.yaml").is_file() or (run / "config.yaml").is_file()
    ):
        return None
    return run


def find_resume_checkpoint(
    logger: Any, callbacks: Any, default_root_dir: str | None
) -> tuple[Path | None, list[Path]]:
    """The newest checkpoint to resume from, and the folders searched.

    Args:
        logger, callbacks: the recipe's ``trainer.logger`` and ``trainer.callbacks`` configs.
        default_root_dir: ``trainer.default_root_dir`` (default: the current folder).
    """
    root = Path(default_root_dir or ".")
    folders = _run_folders(logger, root)
    for cb in callbacks if isinstance(callbacks, list) else []:
        dirpath = isinstance(cb, dict) and (cb.get("init_args") or {}).get("dirpath")
        if dirpath:
            folders.append(Path(dirpath))
    found = sorted(_candidates(folders, root), key=lambda p: p.stat().st_mtime)
    return (found[-1] if found else None), folders


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, tuple):
        node = list(node)
    return {prefix: node}


def network_differences(saved: Any, current: Any, ignore: tuple[str, ...] = ("num_classes",)):
    """``[(key, saved value, current value)]`` where two network configs differ."""
    a, b = _flatten(saved), _flatten(current)
    keys = sorted(set(a) | set(b))
    missing = object()
    return [
        (k, a.get(k, "(absent)"), b.get(k, "(absent)"))
        for k in keys
        if not k.endswith(ignore) and a.get(k, missing) != b.get(k, missing)
    ]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint read as data only (``torch.load(weights_only=True)``: nothing in
    the file is executed, whatever it holds), memory-mapped when it can be (cheap to check).

    Raises :class:`~vtk.errors.CheckpointError`, naming the file and what it is instead: missing,
    empty, truncated or not a PyTorch file; a pickle that holds Python objects a checkpoint does
    not (another program's, or one carrying code: refused, never run); a PyTorch file that is not
    a Lightning checkpoint (a bare state_dict).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was not written through.")
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol it does not expect
            warnings.simplefilter("ignore")
            obj = torch.load(
                path, weights_only=True, map_location="cpu", mmap=head == b"PK\x03\x04"
            )
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        names = [found.group(1)] if found else _pickle_globals(path)
        if not names:  # not a pickle at all, or a broken one
            raise CheckpointError(
                f"{path} is not a PyTorch checkpoint: torch.load could not read it."
            ) from None
        what = f" ({', '.join(dict.fromkeys(names))})"
        raise CheckpointError(
            f"{path} is a pickle that holds Python objects a checkpoint does not{what}: another "
            "program's file, or one carrying code. vtk reads checkpoints as data only and did "
            "not run it; use a checkpoint written by vtk fit."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        kind = (
            "truncated (cut off while written or copied)"
            if head == b"PK\x03\x04"
            else ("not a PyTorch checkpoint")
        )
        reason = " ".join(str(e).split())[:120]
        raise CheckpointError(
            f"{path} is {kind}: torch.load could not read it ({reason})."
        ) from None
    if not isinstance(obj, dict) or "state_dict" not in obj:
        what = "a bare state_dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"{path} is {what}, not a Lightning checkpoint (no state_dict and hyper-parameters "
            "inside): use a checkpoint written by vtk fit, or load plain weights with the "
            "model's weights argument."
        )
    return obj


def _pickle_globals(path: Path) -> list[str] | None:
    """The classes and functions a plain pickle file names (read with ``pickletools``, which
    only parses: nothing is imported or called); None when it is not a pickle."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(path.read_bytes()):
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # pickletools' errors for what is not a pickle
        return None
    return names


def check_task(path: str | Path, checkpoint: dict[str, Any], class_path: str | None) -> None:
    """Refuse a vtk checkpoint of another task than the recipe's (``class_path``), by name."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if not saved or not class_path or saved == class_path:
        return
    short = saved.rsplit(".", 1)[-1]
    if short == class_path.rsplit(".", 1)[-1]:
        return
    raise CheckpointError(
        f"{path} was saved by a {short}; this recipe builds a {class_path.rsplit('.', 1)[-1]}. "
        f"Give a recipe of the checkpoint's task, or no recipe: vtk predict {path} IMAGES."
    )


def recipe_hyperparameters(path: str | Path, instead: str) -> dict[str, Any]:
    """The task's hyper-parameters in a checkpoint written by ``vtk fit`` (its ``_class_path``
    and the network's config among them); a CheckpointError naming the file otherwise, ending
    with ``instead`` (what to do)."""
    path = Path(path)
    hparams = read_checkpoint(path).get("hyper_parameters") or {}
    if not hparams.get("_class_path") or "model" not in hparams:
        raise CheckpointError(
            f"{path} was not saved by `vtk fit` (it has no recipe config); {instead}"
        )
    return hparams


# -- what a run keeps over the checkpoint it evaluates or resumes -----------------------------
def given_model_options(config: Any, argv: list[str]) -> dict[str, Any]:
    """The model options ``argv`` names (``--model.init_args.model.init_args.score_thresh 0.3``,
    or jsonargparse's short form without ``init_args``) with their parsed values, keyed by
    their full dotted path in ``config``: Lightning puts a checkpoint's hyper-parameters over
    the whole model, these are put back."""
    given = {}
    for arg in argv:
        if not arg.startswith("--model."):
            continue
        node, path = config.get("model"), ["model"]
        for part in arg[2:].split("=", 1)[0].split(".")[1:]:
            if isinstance(node, Namespace) and part in node:
                node, path = node[part], [*path, part]
            elif isinstance(node, Namespace) and "init_args" in node and part in node.init_args:
                node, path = node.init_args[part], [*path, "init_args", part]
            else:
                path = []
                break
        if len(path) > 1 and not isinstance(node, Namespace):
            given[".".join(path)] = node
    return given


def eval_options(model: Any) -> dict[str, Any]:
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
