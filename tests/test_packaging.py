"""pyproject.toml lists its packages by hand (for the tasks/ -> vtk.tasks mapping): every
package of the tree must be in the list, or a non-editable install would lack it."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vtk").rglob("__init__.py")
    }
    found |= {"vtk.tasks"}
    assert listed == found
    assert config["package-dir"] == {"vtk.tasks": "tasks"}
    assert (ROOT / "tasks" / "__init__.py").is_file()


def test_tasks_import_as_vtk_tasks() -> None:
    import vtk.tasks

    assert Path(vtk.tasks.__file__).resolve() == ROOT / "tasks" / "__init__.py"
