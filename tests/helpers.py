"""Constants the tests share (importable: pytest puts tests/ on the path, see pyproject.toml)."""

from __future__ import annotations

import sys
from pathlib import Path

#: the repository (tests read its recipes and tools by absolute path; they never write here)
ROOT = Path(__file__).resolve().parents[1]
#: the installed `vtk` command beside this Python
VTK = str(Path(sys.executable).with_name("vtk"))
#: a quiet, quick run: no progress bar, no model summary, loaders in the main process
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--data.num_workers", "0")  # fmt: skip
