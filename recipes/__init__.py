"""The recipes, installed with vtk as ``vtk.recipes`` (package data) so that ``vtk fit NAME``
and ``vtk list`` find them from any folder; this folder is their source."""
