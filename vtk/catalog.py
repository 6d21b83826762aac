"""What ``vtk list`` prints: the registry's tables (:mod:`vtk.registry`), and each backbone
family's variant names read from its module's source without importing it.

Importing the models means importing torch, torchvision and Lightning (seconds on a small CPU);
the registry imports nothing, and a family's variants are data in its source (its ``*_ARCHS``
table): this module reads that assignment with :mod:`ast` and evaluates only its literal parts
(names it references, such as a block class, read as placeholders).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent


_BUILTINS = {"dict": dict, "range": range, "tuple": tuple, "list": list, "set": set,
             "frozenset": frozenset}  # fmt: skip


class _Placeholders(Mapping):
    """A namespace in which every name exists (as its own name): enough to evaluate a table
    whose values reference classes (``block=Bottleneck``) when only its keys are read."""

    def __getitem__(self, key: str) -> Any:
        return _BUILTINS.get(key, key)

    def __iter__(self):  # pragma: no cover - eval never iterates its namespace
        return iter(())

    def __len__(self) -> int:  # pragma: no cover
        return 0


def _source(module: str) -> ast.Module:
    parts = module.split(".")[1:]
    if parts[:1] == ["tasks"]:  # installed from the tasks/ folder: ask the import system where
        # (find_spec imports the parent, ``vtk``, which imports nothing heavy)
        origin = importlib.util.find_spec(module).origin  # type: ignore[union-attr]
        path = Path(str(origin))
    else:
        path = PACKAGE.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.parse(path.read_text(), str(path))


def constant(module: str, name: str) -> Any:
    """The value assigned to ``name`` at the top of ``module`` (``vtk.x.y``), evaluated with
    the names it references as placeholders."""
    for node in _source(module).body:
        targets = (
            [t.id for t in node.targets if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign)
            else [node.target.id]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            else []
        )
        if name in targets and node.value is not None:
            code = compile(ast.Expression(node.value), module, "eval")
            # the package's own source; comprehensions see the builtins, literals the placeholders
            return eval(code, {"__builtins__": _BUILTINS}, _Placeholders())
    raise LookupError(f"{module} assigns no {name}")


def _families() -> list[tuple[str, list[str]]]:
    """(family class, its variant names) in the registry's order (families with variants)."""
    from vtk import registry

    out = []
    for family, where in registry.VARIANTS.items():
        module, _, table = where.partition(":")
        out.append((family, list(constant(module, table))))
    return out


def _models() -> list[str]:
    """The task models (``model.init_args.model``) the registry names."""
    from vtk import registry

    return list(registry.MODELS)


def list_components(recipes: list[Path], recipes_dir: Path) -> str:
    """What ``vtk list`` prints: backbones, plug-ins, models, necks, heads, tasks, data,
    recipes (each recipe with its first comment line)."""
    from vtk import registry

    attention = list(registry.ATTENTION)
    from_c3 = constant("vtk.models.backbones.base", "FROM_C3")
    deform = list(registry.DEFORM_CONV)
    lines = ["Backbones (class_path vtk.models.backbones.<Family>, init_args {arch: <name>}):"]
    lines += [f"  {family}: {', '.join(names)}" for family, names in _families()]
    lines += [
        "  TimmBackbone: any timm model by name, init_args {name: convnext_tiny} (needs timm)"
    ]
    lines += [
        "Plug-ins (backbone arguments; default stages as the papers' configurations):",
        f"  attention: {', '.join(n for n in attention if n not in from_c3)} in every stage, "
        f"{', '.join(n for n in attention if n in from_c3)} in the stages from c3 (stride 8) "
        "on: ResNet, DenseNet 1-3, VGG 2-4   (+ attention_stages, attention_args)",
        "  non_local: {stage: [block, ...]}   (embedded Gaussian, scaled; + non_local_args)",
        f"  deform: {', '.join(deform)} in the stages from c3 on   (+ deform_stages)",
        "  blur_pool: filter size 2-7   (every downsampling anti-aliased)",
        "  stn: true   (spatial transformer before the stem)",
        f"Models (vtk.models, a task's model): {', '.join(_models())}",
        f"Necks (vtk.models.necks): {', '.join(registry.NECKS)}",
        f"Heads (vtk.models.heads): {', '.join(registry.HEADS)}",
        f"Tasks (vtk.tasks): {', '.join(registry.TASKS)}",
        f"Data (vtk.data): {', '.join(registry.DATA)}",
        f"Recipes (installed in {recipes_dir}; vtk fit NAME):",
    ]
    for path in recipes:
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")),
            "",
        )
        lines.append(f"  {path.stem}: {first}")
    return "\n".join(lines)
