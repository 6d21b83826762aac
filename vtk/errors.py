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


class CheckpointError(VTKError, ValueError):
    """A file given as a checkpoint (or an ONNX model) is not one, or not one vtk can use."""


class TrainingError(VTKError, RuntimeError):
    """Training cannot go on (a non-finite loss or gradient); the message says where and what
    to try."""


def find_user_error(error: BaseException) -> VTKError | None:
    """A VTKError behind ``error``: jsonargparse wraps errors raised while it instantiates."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, VTKError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def user_message(error: VTKError) -> str:
    """The message alone, also when a DataLoader worker wrapped it in its traceback."""
    text = str(error)
    if "Original Traceback" in text:
        tail = text.rstrip().rsplit(f"{type(error).__name__}: ", 1)
        text = tail[-1]
    return text
