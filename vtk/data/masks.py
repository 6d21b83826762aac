"""Label masks as real sets store them, turned into class indices once, as they are read.

A :class:`MaskDecoder` holds a set's label conventions:

* ``ignore_index``: the label of pixels that are not scored (255 in VOC, Cityscapes and ADE20K
  after their conversions; 11 in CamVid as SegNet ships it). It reaches the loss, the metrics,
  the padding and the drawings.
* ``label_map``: ``{value on disk: class index or "ignore"}``; values not listed pass through
  (Cityscapes' 34 ids -> 19 train ids).
* ``reduce_zero_label``: 0 -> ignore, k -> k - 1 (ADE20K, whose 0 is "other").
* ``palette``: RGB colours in class order, for colour masks (a CVAT "Segmentation mask" export
  with its ``labelmap.txt``, :func:`read_labelmap`); a colour not in it is an error naming the
  file, the colour and how many pixels have it — unless ``nearest_colour``: each pixel takes
  the class of the nearest palette colour (colour masks saved as JPEG).
* ``threshold``: binary masks saved lossy (JPEG): values >= t are the object (1), the rest
  background (0).

:func:`audit` counts the pixels of every decoded value over a split's masks (cached per file
list) and says, naming files and the fix, what would otherwise go wrong silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vtk.data.io import open_image, read_mask
from vtk.errors import ConfigError, DataError
from vtk.spec import IGNORE_INDEX

log = logging.getLogger("vtk")

IGNORE = "ignore"


def read_labelmap(path: str | Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours of a CVAT ``labelmap.txt`` (``name:r,g,b:parts:actions`` lines,
    ``#`` comments), in file order."""
    names, colours = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(":")
        try:
            rgb = tuple(int(v) for v in parts[1].split(","))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(
                f"{path}, line {n}: expected 'name:r,g,b:...' (CVAT's labelmap.txt), got {line!r}."
            ) from None
        names.append(parts[0].strip())
        colours.append(rgb)  # type: ignore[arg-type]
    if not names:
        raise DataError(f"{path} lists no labels.")
    return names, colours  # type: ignore[return-value]


@dataclass(frozen=True)
class MaskDecoder:
    """How a set's masks become class indices (see the module docs)."""

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    label_map: Mapping[int, int | str] = field(default_factory=dict)
    reduce_zero_label: bool = False
    palette: Sequence[Sequence[int]] | None = None
    threshold: int | None = None
    nearest_colour: bool = False

    def __post_init__(self) -> None:
        if self.threshold is not None:
            if self.num_classes != 2:
                raise ConfigError(
                    f"mask_threshold makes binary masks (0 background, 1 object), but "
                    f"num_classes is {self.num_classes}; set num_classes: 2."
                )
            if self.label_map or self.reduce_zero_label or self.palette is not None:
                raise ConfigError(
                    "mask_threshold decides every pixel by itself: leave out label_map, "
                    "reduce_zero_label and palette."
                )
        if self.nearest_colour and self.palette is None:
            raise ConfigError("nearest_colour needs the palette (palette: [...] or labelmap.txt).")
        if self.label_map and self.reduce_zero_label:
            raise ConfigError(
                "label_map and reduce_zero_label together are ambiguous; write the whole mapping "
                "in label_map (0: ignore, 1: 0, 2: 1, ...)."
            )
        for value, target in self.label_map.items():
            if target != IGNORE and not (
                isinstance(target, int) and 0 <= target < self.num_classes
            ):
                raise ConfigError(
                    f"label_map maps {value} to {target!r}; targets are class indices "
                    f"0..{self.num_classes - 1} or 'ignore'."
                )
        if self.palette is not None and len(self.palette) != self.num_classes:
            raise ConfigError(
                f"the palette has {len(self.palette)} colours for num_classes={self.num_classes}."
            )

    @property
    def key(self) -> str:
        """What identifies these conventions (for the audit's cache)."""
        return json.dumps(
            [self.num_classes, self.ignore_index, sorted((int(k), v) for k, v in self.label_map.items()),
             self.reduce_zero_label, [list(c) for c in self.palette or []], self.threshold,
             self.nearest_colour]
        )  # fmt: skip

    def _lookup(self, top: int) -> np.ndarray:
        lut = np.arange(top + 1, dtype=np.int64)
        if self.reduce_zero_label:
            lut = lut - 1
            lut[0] = self.ignore_index
            if self.ignore_index <= top:
                lut[self.ignore_index] = self.ignore_index
        for value, target in self.label_map.items():
            if 0 <= int(value) <= top:
                lut[int(value)] = self.ignore_index if target == IGNORE else int(target)
        return lut

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Values as stored -> class indices (and ``ignore_index``)."""
        if not self.label_map and not self.reduce_zero_label:
            return raw
        top = int(raw.max()) if raw.size else 0
        return self._lookup(top)[raw].astype(raw.dtype if self.ignore_index <= 255 else np.int32)

    def read(self, path: str | Path) -> np.ndarray:
        """The mask at ``path`` as an ``(H, W)`` array of class indices and ``ignore_index``
        (as stored: :func:`vtk.data.io.read_mask`)."""
        if self.palette is None and self.threshold is None:
            return self.decode(read_mask(path))
        image = open_image(path)
        if self.threshold is not None:
            gray = np.asarray(image.convert("L"))  # JPEGs are saved grey or RGB
            return (gray >= self.threshold).astype(np.uint8)
        if self.nearest_colour:
            return self._nearest_colours(image)
        return self._colours_to_indices(image, path)

    def _nearest_colours(self, image: Image.Image) -> np.ndarray:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
        colours = np.asarray(self.palette, dtype=np.int32)  # (K, 3)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        found, inverse = np.unique(codes, return_inverse=True)  # each distinct colour once
        values = np.stack([found >> 16, (found >> 8) & 255, found & 255], axis=1)
        nearest = ((values[:, None, :] - colours[None]) ** 2).sum(-1).argmin(1)
        dtype = np.uint8 if self.num_classes <= 256 else np.int32
        return nearest[inverse].reshape(codes.shape).astype(dtype)

    def _colours_to_indices(self, image: Image.Image, path: str | Path) -> np.ndarray:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        index = {(r << 16) | (g << 8) | b: k for k, (r, g, b) in enumerate(self.palette or [])}
        found, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        table = np.array([index.get(int(c), -1) for c in found], dtype=np.int64)
        unknown = [(int(c), int(n)) for c, n, t in zip(found, counts, table) if t < 0]
        if unknown:
            listing = ", ".join(
                f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) on {n} pixels" for c, n in unknown[:5]
            )
            raise DataError(
                f"mask {path} has colours that are not in the palette: {listing}. Add them to "
                "the palette / labelmap.txt, or repaint those pixels."
            )
        dtype = np.uint8 if self.num_classes <= 256 else np.int32
        return table[inverse].reshape(codes.shape).astype(dtype)

    def check(self, mask: np.ndarray, path: str | Path) -> None:
        """Refuse values that are neither classes nor ``ignore_index``, with their counts."""
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            values, counts = np.unique(mask[bad], return_counts=True)
            listing = ", ".join(f"{v} ({n} pixels)" for v, n in zip(values[:10], counts[:10]))
            raise DataError(
                f"mask {path} has values {listing}, but num_classes is {self.num_classes} "
                f"(valid: 0..{self.num_classes - 1}, and {self.ignore_index} = ignore). Fix "
                "num_classes, or map the values (label_map, reduce_zero_label)."
            )


# -- the audit --------------------------------------------------------------------------------
@dataclass
class SplitCounts:
    """Per decoded value: pixels, and pixels of the images that hold it (median frequency)."""

    pixels: dict[int, int]
    image_pixels: dict[int, int]
    files: dict[int, str]  # one file holding each value

    def to_json(self) -> dict[str, Any]:
        return {"pixels": self.pixels, "image_pixels": self.image_pixels, "files": self.files}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitCounts:
        def ints(d: dict) -> dict:
            return {int(k): v for k, v in d.items()}

        return cls(ints(data["pixels"]), ints(data["image_pixels"]), ints(data["files"]))


def _count(decoder: MaskDecoder, path: Path) -> tuple[Path, dict[int, int]]:
    mask = decoder.read(path)
    values, counts = np.unique(mask, return_counts=True)
    return path, dict(zip(values.tolist(), counts.tolist()))


def _cache_file(decoder: MaskDecoder, masks: Sequence[Path]) -> Path:
    h = hashlib.sha1(decoder.key.encode())
    for p in masks:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    root = Path(os.environ.get("VTK_DATA_DIR", "~/.cache/vtk")).expanduser()
    return root / "mask_audit" / f"{h.hexdigest()}.json"


def count_split(decoder: MaskDecoder, masks: Sequence[Path], workers: int = 4) -> SplitCounts:
    """The pixel counts of a split's masks (read once; cached per file list and conventions)."""
    cache = _cache_file(decoder, masks)
    if cache.is_file():
        return SplitCounts.from_json(json.loads(cache.read_text()))
    pixels: dict[int, int] = {}
    image_pixels: dict[int, int] = {}
    files: dict[int, str] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for path, counts in pool.map(lambda p: _count(decoder, p), masks):
            total = sum(counts.values())
            for v, n in counts.items():
                pixels[v] = pixels.get(v, 0) + n
                image_pixels[v] = image_pixels.get(v, 0) + total
                files.setdefault(v, str(path))
    result = SplitCounts(pixels, image_pixels, files)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result.to_json()))
    tmp.replace(cache)
    return result


def audit(
    decoder: MaskDecoder, splits: Mapping[str, SplitCounts], class_names: Sequence[str]
) -> str:
    """Check the counts of every split and return the table for the log; raise what would
    otherwise train or score wrong without a word."""
    ignore = decoder.ignore_index
    for split, counts in splits.items():
        bad = sorted(v for v in counts.pixels if v >= decoder.num_classes and v != ignore)
        lossy = _lossy_masks(counts, decoder)
        if bad and lossy:
            raise DataError(lossy)
        if bad:
            listing = ", ".join(
                f"{v} ({counts.pixels[v]} pixels, e.g. {counts.files[v]})" for v in bad[:5]
            )
            raise DataError(
                f"the {split} masks hold values that are neither classes (0.."
                f"{decoder.num_classes - 1}) nor ignore ({ignore}): {listing}. Fix num_classes, "
                "or map them with label_map / reduce_zero_label."
            )
    seen = {v for counts in splits.values() for v in counts.pixels}
    binary = decoder.num_classes == 2 and seen == {0, ignore} and not decoder.label_map
    if binary and ignore == IGNORE_INDEX:  # 0/255 masks: 255 is the object, not "ignore"
        example = next(iter(splits.values())).files[ignore]
        raise DataError(
            f"every mask holds only 0 and {ignore} (e.g. {example}): {ignore} is read as "
            "'ignore', so the foreground would never be learned and mIoU could read 1.0. If "
            f"{ignore} marks the foreground, set label_map: {{{ignore}: 1}}."
        )
    train = splits.get("train")
    if train is not None:
        for split, counts in splits.items():
            missing = sorted(
                v for v in counts.pixels if v < decoder.num_classes and v not in train.pixels
            )
            if split != "train" and missing:
                log.warning(
                    "classes in the %s masks but in no training mask: %s (their IoU can only be 0)",
                    split, [class_names[v] for v in missing],
                )  # fmt: skip
    never = [c for c in range(decoder.num_classes) if c not in seen]
    if never:
        log.warning(
            "classes with no pixel in any %s mask: %s; they are never learned, and their IoU "
            "is nan (left out of mIoU)",
            "/".join(splits), ", ".join(f"{class_names[c]} ({c})" for c in never),
        )  # fmt: skip
    names = {**{i: n for i, n in enumerate(class_names)}, ignore: "(ignore)"}
    header = f"{'value':>6}  {'class':<20}" + "".join(f"{s:>14}" for s in splits)
    rows = [header]
    for v in sorted(seen | set(never)):
        cells = "".join(f"{splits[s].pixels.get(v, 0):>14,}" for s in splits)
        rows.append(f"{v:>6}  {names.get(v, '?'):<20}{cells}")
    return "mask audit (pixels per value and split):\n" + "\n".join(rows)


def _lossy_masks(counts: SplitCounts, decoder: MaskDecoder) -> str | None:
    """What to say when a split's masks look JPEG-compressed (labels blurred into many values
    around a few), or None."""
    values = sorted(counts.pixels)
    jpeg = [f for f in counts.files.values() if Path(f).suffix.lower() in (".jpg", ".jpeg")]
    if decoder.palette is not None or decoder.label_map or (len(values) < 16 and not jpeg):
        return None
    pixels = np.array([counts.pixels[v] for v in values], dtype=np.float64)
    top = [values[i] for i in np.argsort(-pixels)[:2]]  # the modes the noise spreads around
    share = pixels[np.isin(values, top)].sum() / pixels.sum()
    example = jpeg[0] if jpeg else counts.files[values[len(values) // 2]]
    return (
        f"the masks look JPEG-compressed (e.g. {example}): {len(values)} distinct values, "
        f"{share:.0%} of the pixels at {top[0]} and {top[-1]}, the rest compression noise "
        "between them; no label_map can list them. For a binary set (background and object) "
        f"set mask_threshold: {int((top[0] + top[-1] + 1) // 2)} (values at or above it are the "
        "object, class 1; num_classes: 2). For colour masks give the palette with "
        "nearest_colour: true. Masks saved as PNG avoid this."
    )


def median_frequency_weights(counts: SplitCounts, num_classes: int) -> list[float]:
    """SegNet's median frequency balancing (Badrinarayanan et al. §3.3, after Eigen & Fergus):
    freq(c) = pixels of c / pixels of the images holding c; weight(c) = median(freq) / freq(c).
    A class absent from the split gets weight 0."""
    freq = {
        c: counts.pixels[c] / counts.image_pixels[c]
        for c in range(num_classes)
        if counts.pixels.get(c, 0) > 0
    }
    if not freq:
        raise DataError("no class pixels in the training masks: cannot balance the classes.")
    median = float(np.median(list(freq.values())))
    return [median / freq[c] if c in freq else 0.0 for c in range(num_classes)]


def mask_object_sizes(masks: list[np.ndarray], ignore: int = IGNORE_INDEX) -> np.ndarray:
    """Longer side of the bounding box of each class region (background 0 left out)."""
    sides = []
    for mask in masks:
        for c in np.unique(mask):
            if c in (0, ignore):
                continue
            ys, xs = np.nonzero(mask == c)
            sides.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    return np.asarray(sides, dtype=np.float64)
