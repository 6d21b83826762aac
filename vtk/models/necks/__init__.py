"""Necks: take ``in_channels`` (and detection necks ``in_strides``) from the backbone's
``feature_info``; expose ``out_channels`` (and ``strides``)."""

from vtk.models.necks.asff import ASFF, ASFFNeck
from vtk.models.necks.aspp import ASPP
from vtk.models.necks.fpn import FPN
from vtk.models.necks.rfb import RFB, RFBNeck, RFBs

__all__ = ["ASFF", "ASPP", "FPN", "RFB", "ASFFNeck", "RFBNeck", "RFBs"]
