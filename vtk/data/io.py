"""Reading images and label masks the way real files come: any mode, with clear errors.

Images become 8-bit RGB whatever they are on disk (grayscale, palette, RGBA, 16-bit), upright
as their EXIF orientation says (a phone photo stored sideways is read as it is shown, as
OpenCV's ``imread``, mmcv and ultralytics read it; the data's ``exif_orientation: ignore``
reads the stored pixels instead; masks are always read as stored), and a file that is not an image says
so with its path. Torch-free (numpy and Pillow): the ONNX runtime (:mod:`vtk.deploy`) reads
images with it too. Masks stay class indices (PIL modes ``L``,
``P``, ``I;16``, ``I``); a colour mask is refused, since its colours are not class ids.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vtk.errors import DataError

#: EXIF orientations that swap width and height (rotations by 90 or 270 degrees)
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def resize_scale(size: tuple[int, int], min_size: int, max_size: int) -> float:
    """The factor a detector's resize applies to an image of ``size`` (either order of its
    sides): shorter side to ``min_size``, longer at most ``max_size`` (torchvision's rule)."""
    return min(min_size / min(size), max_size / max(size))


def draft_request(size: tuple[int, int], fit: tuple[int, int]) -> tuple[int, int] | None:
    """The (width, height) to ask JPEG draft mode for, so an image of ``size`` (width, height)
    decodes no smaller than a detector's resize makes it: shorter side ``fit[0]``, longer at
    most ``fit[1]`` (:func:`resize_scale`). None when the resize does not shrink it by 2 or
    more."""
    w, h = size
    scale = resize_scale(size, *fit)
    if scale > 0.5:
        return None
    return math.ceil(w * scale), math.ceil(h * scale)


def image_source(path: str | Path) -> Any:
    """What ``PIL.Image.open`` takes for ``path``: the path, or for a file inside a stream
    (:class:`vtk.data.stream.StoredFile`, which has ``read_stored``) its bytes."""
    read_stored = getattr(path, "read_stored", None)
    return io.BytesIO(read_stored()) if read_stored is not None else path


def open_image(path: str | Path, fit: tuple[int, int] | None = None) -> Image.Image:
    """PIL's image of ``path``, decoded now (a truncated file fails here, with its path).

    ``fit`` (shorter side, longer-side cap): a JPEG is decoded at 1/2, 1/4 or 1/8 of its size
    (draft mode, in the DCT: cheaper than decoding it whole) as long as it stays at least as
    large as that resize makes it."""
    try:
        img = Image.open(image_source(path))
        if fit is not None and img.format == "JPEG":
            w, h = img.size
            request = draft_request((w, h), fit)  # symmetric in the sides: EXIF does not matter
            if request is not None:
                img.draft("RGB", request)
        img.load()  # decode now, so a truncated file fails here, with its path
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot decode {path}: {e}. Remove or replace the file.") from None
    return img


def _orientation(img: Image.Image) -> int:
    return int(img.getexif().get(0x0112, 1) or 1)


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1, upright, when there is none)."""
    try:
        with Image.open(image_source(path)) as img:
            return _orientation(img)
    except (OSError, ValueError, UnidentifiedImageError):
        return 1


def upright_size(img: Image.Image, exif: bool = True) -> tuple[int, int]:
    """(width, height) of an opened image as :func:`read_image` gives it (EXIF applied, unless
    ``exif`` is False: as stored)."""
    w, h = img.size
    return (h, w) if exif and _orientation(img) in SWAPPING_ORIENTATIONS else (w, h)


def read_image(
    path: str | Path, fit: tuple[int, int] | None = None, exif: bool = True
) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array, upright (EXIF orientation applied;
    ``exif=False``: the stored pixels, as a tool that ignores the tag labelled them);
    ``fit``: JPEG draft decoding (see :func:`open_image`)."""
    img = open_image(path, fit)
    if exif:
        img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping at 255 as PIL would
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # composite transparent pixels onto black, as a viewer would not show them
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return np.array(img.convert("RGB"))  # writable: albumentations and torch warn otherwise


#: what :func:`as_rgb` takes: a file's path, a PIL image or an ``(H, W, 3)`` uint8 RGB array
ImageLike = str | Path | np.ndarray | Image.Image


def as_rgb(image: ImageLike) -> np.ndarray:
    """``image`` as an ``(H, W, 3)`` uint8 RGB array: a file read by :func:`read_image`, a PIL
    image converted, an array checked."""
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return array


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask as an ``(H, W)`` array of class indices (uint8, or uint16), as stored:
    a tag of its own does not turn it (mmcv reads masks 'unchanged' too)."""
    img = open_image(path)
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        raise DataError(
            f"mask {path} is a colour image (mode {img.mode}); vtk needs one class index per "
            "pixel (a grayscale or palette PNG, as Pascal VOC's SegmentationClass), or the "
            "colour of each class: --data.palette (a list of RGB colours, or the path of a "
            "CVAT labelmap.txt)."
        )
    if img.mode == "LA":
        img = img.getchannel("L")
    a = np.array(img)  # a writable copy: masks become tensors without a copy later
    if a.dtype not in (np.uint8, np.uint16):
        if a.min() < 0 or a.max() > 65535:
            raise DataError(f"mask {path} has values outside 0..65535; it is not a label mask.")
        a = a.astype(np.uint16)
    return a
