"""The trained models vtk ships: weights with their metrics, input spec and checksum.

A registry in the spirit of torchvision's weights (``WeightsEnum`` and its ``meta``) and timm's
``pretrained_cfg``, kept offline: each entry is a YAML *card* beside a safetensors file, in the
repository's ``weights/`` folder (installed as ``vtk.weights``) or in a folder of your own named
by ``VTK_WEIGHTS_DIR`` (several joined by ``os.pathsep``)::

    vtk list weights                                         # the table: metrics, size, SHA-256
    vtk test deeplabv3plus_resnet18_camvid_scratch --data.root CamVid \\
        --ckpt_path camvid_deeplabv3plus_resnet18             # re-score the shipped weights
    vtk predict camvid_deeplabv3plus_resnet18 my_images/      # as a checkpoint's path would
    model = vtk.load("camvid_deeplabv3plus_resnet18")

A card says what the model is and how it was made: its task and network (the task's
hyper-parameters: enough to rebuild it), its classes and **input spec** (the card owns them: a
checkpoint materialised from it carries these), the metrics it scored and on which split, the
recipe and command that trained it, the command that re-scores it, and the SHA-256 of its
tensors file. A file whose checksum differs from its card is refused before it is read; the
tensors are read with safetensors (data only: nothing in the file can run).

Everywhere vtk takes a checkpoint it takes an entry's name too: :func:`resolve` turns the name
into a Lightning checkpoint written once into the cache (``VTK_CACHE_DIR``, default
``~/.cache/vtk``), and a model's ``weights`` argument reads an entry's tensors directly
(:func:`read_tensors`), for a backbone or a whole model, to fine-tune from it.

``vtk export CKPT --format weights --name NAME --out DIR`` writes an entry from a checkpoint
(:func:`write_entry`). This module imports neither torch nor Lightning until tensors are read,
so ``vtk list weights`` stays instant.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtk.errors import WeightsError

#: folders of your own cards and files, searched after the package's (os.pathsep-separated)
WEIGHTS_DIR_ENV = "VTK_WEIGHTS_DIR"
#: where checkpoints materialised from entries are kept (default ``~/.cache/vtk``)
CACHE_DIR_ENV = "VTK_CACHE_DIR"
#: what a card states outside the task's hyper-parameters, and owns: a materialised checkpoint's
#: hyper-parameters take these from the card
OWNED = ("class_names", "category_ids", "ignore_index", "input_spec")


def package_dir() -> Path:
    """The folder of the weights installed with vtk (the repository's ``weights/``)."""
    import vtk.weights

    return Path(vtk.weights.__file__).parent


def weights_dirs() -> list[Path]:
    """The folders searched for cards: the package's, then ``VTK_WEIGHTS_DIR``'s."""
    extra = [Path(p).expanduser() for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep)]
    return [package_dir(), *(p for p in extra if str(p) not in ("", "."))]


@dataclass(frozen=True)
class WeightsEntry:
    """One card (``card``, the YAML file) and what it says (``meta``)."""

    name: str
    card: Path
    meta: Mapping[str, Any]

    @property
    def file(self) -> Path:
        return self.card.parent / str(self.meta["file"])

    @property
    def sha256(self) -> str:
        return str(self.meta["sha256"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    def hyper_parameters(self) -> dict[str, Any]:
        """The task's hyper-parameters as a checkpoint of ``vtk fit`` carries them, with the
        card's own classes and input spec."""
        hparams = {"_class_path": self.task, **dict(self.meta.get("hyper_parameters") or {})}
        hparams.update({k: self.meta.get(k) for k in OWNED if k in self.meta})
        hparams.setdefault("_instantiator", "lightning.pytorch.cli.instantiate_module")
        return hparams

    def metrics_text(self) -> str:
        metrics = self.meta.get("metrics") or {}
        values = ", ".join(f"{k} {v}" for k, v in (metrics.get("values") or {}).items())
        return f"{metrics.get('split', '?')}: {values}"


def _read_card(path: Path) -> WeightsEntry:
    import yaml

    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise WeightsError(f"weights card {path} is not valid YAML: {e}") from None
    missing = [
        k for k in ("name", "task", "file", "sha256") if not isinstance(meta, dict) or k not in meta
    ]
    if missing:
        raise WeightsError(f"weights card {path} lacks {', '.join(missing)}.")
    if meta["name"] != path.stem:
        raise WeightsError(f"weights card {path} names itself {meta['name']!r}: rename one.")
    return WeightsEntry(meta["name"], path, meta)


def entries() -> dict[str, WeightsEntry]:
    """Every entry, by name (the package's first; a name given twice is an error)."""
    found: dict[str, WeightsEntry] = {}
    for folder in weights_dirs():
        for card in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            entry = _read_card(card)
            if entry.name in found:
                raise WeightsError(
                    f"weights {entry.name} are registered twice: {found[entry.name].card} and "
                    f"{card}; rename one."
                )
            found[entry.name] = entry
    return found


def is_weights_name(value: str | Path | None) -> bool:
    """Whether ``value`` names an entry (and not an existing file, which always wins)."""
    if value is None:
        return False
    text = str(value)
    return _looks_like_a_name(text) and not Path(text).exists() and text in entries()


def get(name: str) -> WeightsEntry:
    """The entry ``name``; an error listing the entries (and the close one) otherwise."""
    known = entries()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise WeightsError(
        f"no weights named {name!r}.{hint} The entries are: {', '.join(known) or '(none)'} "
        "(vtk list weights)."
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(entry: WeightsEntry) -> Path:
    """The entry's tensors file, after checking that it exists and that its SHA-256 is the
    card's (a changed, damaged or Git-LFS placeholder file is refused by name)."""
    path = entry.file
    if not path.is_file():
        raise WeightsError(
            f"weights {entry.name}: its file {path} is missing (card {entry.card}); restore it "
            "from the repository."
        )
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise WeightsError(
            f"weights {entry.name}: {path} has SHA-256 {actual[:16]}..., its card says "
            f"{entry.sha256[:16]}...: the file was changed or damaged, so it is not read. "
            "Restore it from the repository (git checkout -- that file)."
        )
    return path


def read_tensors(name: str) -> tuple[dict[str, Any], str]:
    """The entry's tensors (float32, keyed as the task's ``state_dict``), checked against the
    card's SHA-256 and read as data only, and a description of their source for messages."""
    from safetensors.torch import load_file

    entry = get(name)
    path = verify(entry)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' own errors for a file that is not one
        raise WeightsError(f"weights {name}: {path} is not a safetensors file ({e}).") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, (
        f"vtk weights {name}"
    )


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path("~/.cache/vtk")).expanduser()


def checkpoint_path(name: str) -> Path:
    """A Lightning checkpoint of the entry (the task's hyper-parameters from the card, its
    tensors in float32), written once into :func:`cache_dir` under the file's checksum."""
    entry = get(name)
    verify(entry)
    target = cache_dir() / "checkpoints" / f"{name}-{entry.sha256[:16]}.ckpt"
    if target.is_file() and target.stat().st_size > 0:
        return target
    import lightning
    import torch

    state, _ = read_tensors(name)
    checkpoint = {
        "epoch": int(entry.meta.get("epoch", 0)),
        "global_step": int(entry.meta.get("global_step", 0)),
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": state,
        "hparams_name": "kwargs",
        "hyper_parameters": entry.hyper_parameters(),
        **dict(entry.meta.get("checkpoint") or {}),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    torch.save(checkpoint, partial)
    os.replace(partial, target)
    return target


def _looks_like_a_name(text: str) -> bool:
    return bool(text) and "/" not in text and os.sep not in text and not Path(text).suffix


def resolve(value: str | Path) -> str:
    """``value`` as a checkpoint path: an entry's name becomes its materialised checkpoint
    (:func:`checkpoint_path`); an existing file or a path is returned as given; a bare word
    that names neither is an error listing the entries."""
    text = str(value)
    if is_weights_name(text):
        return str(checkpoint_path(text))
    if _looks_like_a_name(text) and not Path(text).exists():
        get(text)  # raises: no such entry (the close one, the list)
    return text


def table() -> str:
    """What ``vtk list weights`` prints: each entry with its task, size, metrics, recipe and
    SHA-256."""
    known = entries()
    if not known:
        return "No weights are registered."
    lines = [f"Weights (vtk.load NAME, --ckpt_path NAME, weights: NAME; in {package_dir()}"
             + (f" and {WEIGHTS_DIR_ENV}" if os.environ.get(WEIGHTS_DIR_ENV) else "") + "):"]  # fmt: skip
    for entry in known.values():
        meta = entry.meta
        size = entry.file.stat().st_size / 1e6 if entry.file.is_file() else 0.0
        params = meta.get("params")
        lines += [
            f"  {entry.name}: {entry.task.rsplit('.', 1)[-1]}, {meta.get('architecture', '')}"
            + (f", {params / 1e6:.1f} M parameters" if params else "")
            + f", {size:.1f} MB {meta.get('dtype', '')}",
            f"      {entry.metrics_text()}",
            f"      recipe {meta.get('recipe', '-')}; sha256 {entry.sha256}",
        ]
    return "\n".join(lines)


def write_entry(
    checkpoint: str | Path,
    name: str,
    out_dir: str | Path,
    info: Mapping[str, Any] | None = None,
) -> WeightsEntry:
    """Write ``<out_dir>/<name>.safetensors`` (the checkpoint's tensors in float16, those out of
    float16's range kept in float32) and ``<out_dir>/<name>.yaml`` (the card: ``info``'s fields,
    then the task's hyper-parameters, classes, input spec and the file's SHA-256)."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from vtk.checkpoint import read_checkpoint

    if not name.isidentifier():
        raise WeightsError(f"weights names are lowercase words joined by '_': not {name!r}.")
    ckpt = read_checkpoint(checkpoint)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    if "_class_path" not in hparams:
        raise WeightsError(f"{checkpoint} was not saved by `vtk fit` (it has no recipe config).")
    tensors: dict[str, torch.Tensor] = {}
    kept = []
    for key, value in ckpt["state_dict"].items():
        value = value.detach().cpu().contiguous()
        if value.is_floating_point():
            half = value.to(torch.float16)
            if torch.isfinite(half).all() or not torch.isfinite(value).all():
                value = half
            else:
                kept.append(key)
        tensors[key] = value
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"{name}.safetensors"
    save_file(tensors, str(file))
    file.chmod(0o644)
    net_params = sum(
        v.numel()
        for k, v in tensors.items()
        if k.startswith("model.") and v.is_floating_point() and "running_" not in k
    )
    task = hparams.pop("_class_path")
    hparams.pop("_instantiator", None)
    owned = {k: hparams.pop(k) for k in OWNED if k in hparams}
    extras = {k: v for k, v in ckpt.items() if k.startswith("vtk_")}
    card: dict[str, Any] = {
        "name": name,
        **dict(info or {}),
        "task": task,
        "params": int(net_params),
        "dtype": "float16" + (f" ({len(kept)} tensors float32)" if kept else ""),
        **owned,
        "epoch": int(ckpt.get("epoch", 0)),
        "global_step": int(ckpt.get("global_step", 0)),
        "hyper_parameters": hparams,
        **({"checkpoint": extras} if extras else {}),
        "file": file.name,
        "sha256": file_sha256(file),
    }
    path = out / f"{name}.yaml"
    path.write_text(
        f"# {card.get('description', name)}\n"
        + yaml.safe_dump(card, sort_keys=False, width=100, default_flow_style=None)
    )
    return _read_card(path)
