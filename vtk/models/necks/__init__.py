"""Necks: take ``in_channels`` from the backbone's ``feature_info``, expose ``out_channels``."""

from vtk.models.necks.aspp import ASPP

__all__ = ["ASPP"]
