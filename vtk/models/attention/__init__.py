"""Attention plug-ins. Each takes its channel count first.

``ATTENTION`` maps the names a backbone's ``attention`` argument accepts to the modules that
sit inside its blocks; non-local blocks and the spatial transformer are plug-ins of their own
kind (``non_local``, ``stn`` arguments).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vtk.models.attention.cbam import CBAM
from vtk.models.attention.eca import ECA
from vtk.models.attention.gc import GlobalContext
from vtk.models.attention.non_local import NonLocal2d
from vtk.models.attention.se import SqueezeExcite
from vtk.models.attention.stn import SpatialTransformer
from vtk.registry import table

#: In-block attention, by the name a backbone's ``attention`` argument takes: the registry's
#: table (:data:`vtk.registry.ATTENTION`), loaded.
ATTENTION: dict[str, type[nn.Module]] = table("attention")


def create_attention(name: str, channels: int, **kwargs: Any) -> nn.Module:
    try:
        cls = ATTENTION[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; valid: {', '.join(ATTENTION)}") from None
    return cls(channels, **kwargs)


__all__ = [
    "ATTENTION",
    "CBAM",
    "ECA",
    "GlobalContext",
    "NonLocal2d",
    "SpatialTransformer",
    "SqueezeExcite",
    "create_attention",
]
