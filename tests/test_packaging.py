"""pyproject.toml lists its packages by hand (for the tasks/ -> vtk.tasks and recipes/ ->
vtk.recipes mappings): every package of the tree must be in the list, or a non-editable install
would lack it; and a non-editable install, used from an empty folder, runs a recipe by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from helpers import ROOT


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vtk").rglob("__init__.py")
    }
    found |= {"vtk.tasks", "vtk.recipes", "vtk.weights"}
    assert listed == found
    assert config["package-dir"] == {
        "vtk.tasks": "tasks", "vtk.recipes": "recipes", "vtk.weights": "weights"
    }  # fmt: skip
    assert config["package-data"] == {
        "vtk.recipes": ["*.yaml"], "vtk.weights": ["*.yaml", "*.safetensors"]
    }  # fmt: skip
    for folder in ("tasks", "recipes", "weights"):
        assert (ROOT / folder / "__init__.py").is_file()


def test_tasks_and_recipes_import_from_their_folders() -> None:
    import vtk.recipes
    import vtk.tasks

    assert Path(vtk.tasks.__file__).resolve() == ROOT / "tasks" / "__init__.py"
    assert Path(vtk.recipes.__file__).resolve() == ROOT / "recipes" / "__init__.py"


@pytest.mark.slow
def test_a_non_editable_install_runs_a_recipe_by_name_from_an_empty_folder(tmp_path) -> None:
    """``pip install .`` (a wheel, not this checkout) into its own folder, then ``vtk fit
    demo_segmentation`` from an empty folder: the recipe, the tasks and the package come from
    the install. The dependencies are this environment's (installing torch again would take
    gigabytes), so the wheel goes to a ``--target`` folder placed first on the path."""
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(site), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    installed = list((site / "vtk" / "recipes").glob("*.yaml"))
    assert {p.name for p in installed} == {p.name for p in (ROOT / "recipes").glob("*.yaml")}
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import vtk, vtk.tasks, vtk.recipe as r; "
         "print(vtk.__file__, vtk.tasks.__file__, r.recipes_dir())"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert all(part.startswith(str(site)) for part in where.stdout.split()), where.stdout
    fit = subprocess.run(
        [str(site / "bin" / "vtk"), "fit", "demo_segmentation", "--trainer.max_steps", "2",
         "--trainer.limit_val_batches", "1", "--data.num_workers", "0",
         "--trainer.enable_progress_bar", "false"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (
        empty / "runs" / "demo_segmentation" / "version_0" / "checkpoints" / "last.ckpt"
    ).is_file()


def _vtk_imports(path: Path, module_level_only: bool) -> set[str]:
    """The vtk modules a file imports (absolute and relative forms)."""
    import ast

    rel = path.relative_to(ROOT).with_suffix("").parts
    parts = ["vtk", "tasks", *rel[1:]] if rel[0] == "tasks" else list(rel)
    package = parts[:-1]
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vtk")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            if base.startswith("vtk"):
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def test_no_import_cycle_and_the_runner_does_not_import_the_dispatcher() -> None:
    """Module-level imports between vtk's modules form no cycle (a package's ``__init__``,
    which re-exports, aside), and the Lightning runner never imports the light dispatcher
    (``vtk.cli`` imports ``vtk.runner`` lazily; command-line helpers live in ``vtk.argv``)."""
    files = [*(ROOT / "vtk").rglob("*.py"), *(ROOT / "tasks").glob("*.py")]

    def name(p: Path) -> str:
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        parts = ["vtk", "tasks", *parts[1:]] if parts[0] == "tasks" else parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in files if p.name != "__init__.py"}
    graph = {m: _vtk_imports(p, True) & set(modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, " -> ".join([*path[path.index(d) :], d])  # a cycle
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    runner = _vtk_imports(ROOT / "vtk" / "runner.py", module_level_only=False)
    assert "vtk.cli" not in runner and not any(n.startswith("vtk.cli.") for n in runner)
