"""Errors that describe a problem with the user's input (data, recipe, weights).

Each message says what was wrong, where (file, image id, key) and what to do. The `vtk`
command prints these as one clean message instead of a traceback.
"""


class VTKError(Exception):
    """A problem with the user's input that the message fully explains."""


class DataError(VTKError, ValueError):
    """A dataset on disk is missing, incomplete or inconsistent."""


class WeightsError(VTKError, ValueError):
    """Weights cannot be found, downloaded, read or loaded into the model."""


class ConfigError(VTKError, ValueError):
    """A model or task argument cannot work as given."""


class TrainingError(VTKError, RuntimeError):
    """Training cannot go on (a non-finite loss or gradient); the message says where and what
    to try."""
