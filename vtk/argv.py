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
    """The value of the last ``--config`` of a command line (a recipe path or YAML text)."""
    return option_value(argv, "--config")
