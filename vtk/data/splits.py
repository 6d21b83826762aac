"""Seeded train / val / test assignment of named items, shared by the DataModules'
``val_fraction`` / ``test_fraction`` and ``vtk convert``'s fractions (no torch here)."""

from __future__ import annotations

import random
from collections.abc import Iterable


def seeded_roles(
    keys: Iterable[str], val: float | None, test: float | None, rng: random.Random
) -> dict[str, str]:
    """``{key: "train" | "val" | "test"}``: the keys sorted, shuffled by ``rng``, the first
    ``round(n * test)`` test, the next ``round(n * val)`` val, the rest train."""
    group = sorted(keys)
    rng.shuffle(group)
    n_test = round(len(group) * (test or 0.0))
    n_val = round(len(group) * (val or 0.0))
    return {
        k: "test" if i < n_test else "val" if i < n_test + n_val else "train"
        for i, k in enumerate(group)
    }
