"""The trained models that ship with vtk, installed as ``vtk.weights`` (package data): one YAML
card and one safetensors file per entry. :mod:`vtk.zoo` reads them; ``vtk list weights`` prints
them."""
