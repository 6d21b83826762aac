"""vtk.models is free of Lightning: a network can be built, saved and loaded where only torch
and torchvision are installed."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_every_models_module_imports_without_lightning() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import vtk.models\n"
        "for m in pkgutil.walk_packages(vtk.models.__path__, 'vtk.models.'):\n"
        "    importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] in ('lightning', 'pytorch_lightning'))\n"
        "print(len(list(pkgutil.walk_packages(vtk.models.__path__))), loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) > 10 and loaded.strip() == "[]", done.stdout
