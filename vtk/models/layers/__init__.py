"""Layers that replace a backbone's own: deformable convs, anti-aliased downsampling."""

from vtk.models.layers.blur_pool import BlurPool2d, MaxBlurPool2d
from vtk.models.layers.deform_conv import DeformConv2d
from vtk.registry import table

#: Deformable conv versions, by the name a backbone's ``deform`` argument takes: the registry's
#: table (:data:`vtk.registry.DEFORM_CONV`), loaded (each builds a :class:`DeformConv2d`).
DEFORM_CONV = table("deform")

__all__ = ["DEFORM_CONV", "BlurPool2d", "DeformConv2d", "MaxBlurPool2d"]
