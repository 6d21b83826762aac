"""Layers that replace a backbone's own: deformable convs, anti-aliased downsampling."""

from vtk.models.layers.blur_pool import BlurPool2d, MaxBlurPool2d
from vtk.models.layers.deform_conv import DEFORM_CONV, DeformConv2d

__all__ = ["DEFORM_CONV", "BlurPool2d", "DeformConv2d", "MaxBlurPool2d"]
