"""Reading options off a command line before any parser has: torch-free, shared by the light
dispatcher (:mod:`vtk.cli`) and the Lightning runner (:mod:`vtk.runner`), so that neither
imports the other for it."""

from __future__ import annotations


def option_value(argv: list[str], name: str) -> str | None:
    """The value of the last ``name`` option of a command line (``name VALUE`` or ``name=VALUE``)."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    values += [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]
    return values[-1] if values else None


def config_value(argv: list[str]) -> str | None:
    """The recipe of a command line: its first ``--config`` (a path or YAML text), where ``vtk
    fit RECIPE`` puts the recipe; a later ``--config`` is a partial file laid over it (a head,
    a data section), which names neither the run nor its task."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None
