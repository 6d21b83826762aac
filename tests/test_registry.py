"""vtk/registry.py: one table per kind of part, the same for every kind, which vtk list, the
packages' lookups and the docs read."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from lightning.pytorch import LightningDataModule
from torch import nn

import vtk.data
import vtk.models
import vtk.models.heads
import vtk.models.necks
import vtk.tasks
from vtk import registry
from vtk.catalog import _families, list_components
from vtk.models.attention import ATTENTION
from vtk.models.backbones import BACKBONES, Backbone
from vtk.models.layers import DEFORM_CONV

DOCS = Path(__file__).parents[1] / "docs"


@pytest.mark.parametrize("kind", list(registry.KINDS))
def test_every_registered_part_loads_as_what_its_package_exports(kind) -> None:
    packages = {"backbone": vtk.models.backbones, "neck": vtk.models.necks,
                "head": vtk.models.heads, "model": vtk.models, "task": vtk.tasks,
                "data": vtk.data}  # fmt: skip
    for name, part in registry.table(kind).items():
        assert callable(part), (kind, name)
        if kind in packages:
            assert getattr(packages[kind], name) is part, (kind, name)  # one object, two doors


def test_every_part_a_package_exports_is_registered() -> None:
    """No class a recipe could name escapes the registry (and so vtk list and the docs)."""

    def public_classes(module, base) -> set[str]:
        return {n for n in module.__all__ if inspect.isclass(getattr(module, n))
                and issubclass(getattr(module, n), base)}  # fmt: skip

    assert public_classes(vtk.tasks, vtk.tasks.VisionTask) - {"VisionTask"} == set(registry.TASKS)
    abstract = {"VisionDataModule", "ClassificationDataModule", "SegmentationDataModule"}
    assert public_classes(vtk.data, LightningDataModule) - abstract == set(registry.DATA)
    parts = {"RFB", "RFBs", "ASFF"}  # the necks' building blocks, not necks
    assert public_classes(vtk.models.necks, nn.Module) - parts == set(registry.NECKS)
    assert public_classes(vtk.models.heads, nn.Module) == set(registry.HEADS)
    families = {n for n, c in vars(vtk.models.backbones).items()
                if inspect.isclass(c) and issubclass(c, Backbone) and c is not Backbone}  # fmt: skip
    assert families == set(registry.BACKBONES)


def test_the_lookups_and_vtk_list_are_the_registry() -> None:
    assert list(ATTENTION) == list(registry.ATTENTION)
    assert list(DEFORM_CONV) == list(registry.DEFORM_CONV)
    assert DEFORM_CONV["v2"](8, 8, 3, padding=1).modulated
    families: dict[str, list[str]] = {}
    for name, family in BACKBONES.items():
        families.setdefault(family.__name__, []).append(name)
    assert dict(_families()) == families  # variant names read from source = the loaded tables
    listing = list_components([], Path("."))
    for table in registry.KINDS.values():
        for name in table:
            assert name in listing, name


def test_the_parts_page_is_the_registry() -> None:
    page = (DOCS / "parts.md").read_text()
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    assert len(sections) == len(registry.KINDS)
    for section, (kind, table) in zip(sections, registry.KINDS.items()):
        rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section, flags=re.M)
        assert dict(rows) == table, kind  # every part, where it is, in order
