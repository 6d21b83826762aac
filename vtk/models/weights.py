"""Loading weights: torchvision's by name, or a local file, with an honest report.

Every model that torchvision also has keeps torchvision's parameter names, so its state_dict
loads unchanged. What does not load is reported, never dropped silently: parameters the file
lacks (new plug-ins) keep their own initialisation and are listed, tensors the model does not
use (an ImageNet classifier in a backbone) are listed, and a shape that differs is an error,
except for the class-logits layers a fine-tuning run re-initialises on purpose.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vtk.errors import WeightsError

log = logging.getLogger("vtk")

#: ``weights="imagenet"`` means torchvision's first ImageNet weights (``IMAGENET1K_V1``): the
#: classic weights the papers and torchvision's own DeepLab / FCOS / RetinaNet start from.
#: Newer torchvision weights are asked for by their enum name, e.g. ``"IMAGENET1K_V2"``.
IMAGENET = "IMAGENET1K_V1"


def no_weights(weights: str | Path | None) -> bool:
    """True for "train from scratch": None, or the strings "null"/"none".

    jsonargparse turns ``--model.model.backbone.weights null`` into the string "None" when the
    key is nested two classes deep, so the strings must mean None too.
    """
    return weights is None or str(weights).strip().lower() in ("", "none", "null")


def torchvision_state_dict(model_name: str, weights: str) -> dict[str, Tensor]:
    """Download (or take from torch.hub's cache) torchvision's weights for ``model_name``.

    ``weights`` is ``"imagenet"`` or the name of a member of torchvision's weights enum
    (``"IMAGENET1K_V2"``, ``"DEFAULT"``, ...).
    """
    entry = _torchvision_entry(model_name, weights)
    try:
        return entry.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # URLError, socket errors, hash errors: all mean "could not fetch"
        filename = entry.url.rsplit("/", 1)[-1]
        raise WeightsError(
            f"could not download torchvision's {model_name} weights {entry} from {entry.url} "
            f"({type(e).__name__}: {e}). Without internet access, download that file elsewhere "
            f"and pass its path instead: weights: /path/to/{filename}"
        ) from e


Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]


def weights_normalisation(
    weights: str | Path | None, torchvision_name: str | None = None
) -> Normalisation | None:
    """The (mean, std) of RGB in [0, 1] that ``weights`` were trained with, as their owner says:
    torchvision's weights enum (its transforms), a vtk weights card (its input spec); None for
    no weights or a file that says nothing (the data's normalisation, or vtk's default)."""
    if no_weights(weights):
        return None
    from vtk import zoo

    text = str(weights)
    if zoo.is_weights_name(text):
        spec = zoo.get(text).meta.get("input_spec") or {}
        mean, std = spec.get("mean"), spec.get("std")
        return (tuple(mean), tuple(std)) if mean and std else None  # type: ignore[return-value]
    path = Path(text).expanduser()
    if torchvision_name is None or path.suffix or "/" in text or path.exists():
        return None
    transforms = _torchvision_entry(torchvision_name, text).transforms()
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    return (tuple(mean), tuple(std)) if mean and std else None  # type: ignore[return-value]


def _torchvision_entry(model_name: str, weights: str) -> Any:
    """The member of torchvision's weights enum that ``weights`` names for ``model_name``."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(model_name)
    except (ValueError, KeyError):
        raise WeightsError(
            f"torchvision has no weights for {model_name}; pass the path of a state_dict instead "
            "(vtk's parameter names follow torchvision's family conventions)."
        ) from None
    name = IMAGENET if weights.lower() == "imagenet" else weights
    try:
        entry = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ["imagenet", "DEFAULT", *enum.__members__]
        raise WeightsError(
            f"torchvision has no weights {weights!r} for {model_name}; valid names: "
            f"{', '.join(valid)}, or a path to a state_dict file."
        ) from None
    return entry


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state_dict from a file (weights only, never arbitrary pickles).

    Accepts a plain state_dict, a Lightning checkpoint (``state_dict``) or a torchvision /
    timm training checkpoint (``model``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; give the path of a saved state_dict, "
            "'imagenet', or null for random initialisation."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"could not read {path} as a PyTorch state_dict: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state_dict (a mapping of names to tensors).")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _best_prefix(state: Mapping[str, Tensor], own: Iterable[str]) -> str:
    """The key prefix under which ``state`` holds this module's tensors (often "")."""
    own = set(own)
    votes: Counter[str] = Counter()
    for key in state:
        if key in own:
            votes[""] += 1
        for i, ch in enumerate(key):
            if ch == "." and key[i + 1 :] in own:
                votes[key[: i + 1]] += 1
    return votes.most_common(1)[0][0] if votes else ""


def _summarise(keys: list[str], limit: int = 8) -> str:
    modules = sorted({k.rsplit(".", 1)[0] for k in keys})
    shown = ", ".join(modules[:limit])
    return shown + (f" (+{len(modules) - limit} more)" if len(modules) > limit else "")


def load_state_dict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    reinit_prefixes: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``module``, reporting what did not load.

    Args:
        module: the model or sub-model to load into.
        state: the tensors, keyed as ``module.state_dict()`` or under one common prefix (a
            whole-model or Lightning checkpoint loaded into a backbone works).
        source: where the tensors come from, for the messages.
        reinit_prefixes: parameters under these names may differ in shape (class logits when
            ``num_classes`` differs): they keep their initialisation and are reported.
    """
    own = module.state_dict()
    prefix = _best_prefix(state, own)
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    matched = {k: v for k, v in state.items() if k in own}
    if not matched:
        example = next(iter(own), "?")
        raise WeightsError(
            f"none of the {len(state)} tensors in {source} belong to this "
            f"{type(module).__name__} (it expects names like {example!r}); is it the weights "
            "file of another architecture?"
        )
    reinit = tuple(reinit_prefixes)
    mismatched = [k for k, v in matched.items() if v.shape != own[k].shape]
    fatal = [k for k in mismatched if not k.startswith(reinit)]
    if fatal:
        details = "; ".join(
            f"{k}: file {tuple(matched[k].shape)} vs model {tuple(own[k].shape)}" for k in fatal[:5]
        )
        raise WeightsError(
            f"{len(fatal)} tensors in {source} have another shape than in the model ({details}). "
            "The file was saved from a differently configured model: check the architecture "
            "and its arguments."
        )
    if mismatched:
        log.warning(
            "re-initialised %s: the shapes in %s differ (another num_classes), so these layers "
            "train from their own initialisation.",
            _summarise(mismatched),
            source,
        )
    loadable = {k: v for k, v in matched.items() if k not in mismatched}
    module.load_state_dict(loadable, strict=False)
    missing = [k for k in own if k not in matched]
    unexpected = [k for k in state if k not in own]
    if missing:
        log.warning(
            "%d tensors are not in %s and keep their own initialisation: %s",
            len(missing),
            source,
            _summarise(missing),
        )
    if unexpected:
        log.info("not used from %s: %s", source, _summarise(unexpected))
    log.info("loaded %d tensors from %s", len(loadable), source)


def fetch_weights(
    weights: str | Path, torchvision_name: str | None = None
) -> tuple[dict[str, Tensor], str]:
    """The tensors ``weights`` names, and where they come from (for messages).

    ``weights`` is the name of weights vtk ships (``vtk list weights``: the tensors of the part
    being loaded are found under its prefix, so a backbone can start from a whole model's
    entry), a path, or a torchvision weights name ("imagenet", "IMAGENET1K_V2", ...) of the
    torchvision model ``torchvision_name``.
    """
    from vtk import zoo

    text = str(weights)
    if zoo.is_weights_name(text):  # a model vtk ships (vtk list weights)
        return zoo.read_tensors(text)
    path = Path(text).expanduser()
    if torchvision_name is None or path.suffix or "/" in text or path.exists():
        return read_state_dict(path), str(path)
    return torchvision_state_dict(torchvision_name, text), f"torchvision {torchvision_name} {text}"


def load_weights(
    module: nn.Module,
    weights: str | Path,
    torchvision_name: str | None = None,
    reinit_prefixes: Iterable[str] = (),
) -> None:
    """Load ``weights`` (see :func:`fetch_weights`) into ``module``, reporting what did not load."""
    state, source = fetch_weights(weights, torchvision_name)
    load_state_dict(module, state, source, reinit_prefixes)
