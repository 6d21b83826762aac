"""vtk: a Lightning-based toolkit for downstream computer vision.

``vtk.models`` holds plain ``torch.nn`` models (backbones, necks, heads), ``vtk.data`` the
datasets and DataModules, ``vtk.tasks`` the LightningModules, and ``vtk.cli`` the ``vtk``
command that trains them from YAML recipes.
"""

__version__ = "0.1.0"


def load(checkpoint, device: str = "auto", fast: bool = True, **options):
    """A checkpoint saved by ``vtk fit``, ready to ``.predict(image)`` and
    ``.predict_folder(dir)``: see :func:`vtk.api.load`. A ``.onnx`` file written by ``vtk
    export`` gives a :class:`vtk.deploy.OnnxPredictor` (onnxruntime; torch is not imported)."""
    if str(checkpoint).endswith(".onnx"):
        from vtk.deploy import OnnxPredictor

        return OnnxPredictor(checkpoint, **options)
    from vtk.api import load as _load

    return _load(checkpoint, device, fast, **options)
