"""Listing a segmentation set's samples: an image, its mask and, where there is one, its
region of interest, found by a VOC 2012 split list or by matching two folders' file names; the
image/mask size check and a classes CSV. :mod:`vtk.data.segmentation` builds its datasets on
these."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vtk.data.base import OnBadImage
from vtk.data.io import IMAGE_SUFFIXES, is_image_file, upright_size
from vtk.errors import DataError

log = logging.getLogger("vtk")

VOC_HOWTO = (
    "Get Pascal VOC 2012 from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
    "(VOCtrainval_11-May-2012.tar) and extract it so that ROOT/JPEGImages exists; for the "
    "train_aug split add the SBD masks as ROOT/SegmentationClassAug and the list "
    "ROOT/ImageSets/Segmentation/train_aug.txt (README, 'Semantic segmentation'). Then pass "
    "--data.root ROOT."
)


@dataclass(frozen=True)
class Sample:
    """An image, its mask and, where the data has one, its region of interest (a grey image,
    non-zero inside: DRIVE's field of view): pixels outside it are not scored."""

    id: str
    image: Path
    mask: Path
    roi: Path | None = None


# -- listing samples --------------------------------------------------------------------------
def voc_samples(root: str | Path, split: str) -> list[Sample]:
    """The samples of ``ImageSets/Segmentation/<split>.txt`` under a VOC 2012 root."""
    root = Path(root).expanduser()
    if not (root / "JPEGImages").is_dir():
        raise DataError(f"Pascal VOC 2012 not found at {root} (no JPEGImages folder). {VOC_HOWTO}")
    split_dir = root / "ImageSets" / "Segmentation"
    split_file = split_dir / f"{split}.txt"
    if not split_file.is_file():
        have = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
        raise DataError(
            f"split file {split_file} does not exist; splits found: {have or 'none'}. "
            + ("The train_aug list comes with SBD: " + VOC_HOWTO if split == "train_aug" else "")
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split file {split_file} lists no images.")
    mask_dirs = [root / "SegmentationClass", root / "SegmentationClassAug"]
    samples, no_image, no_mask = [], [], []
    for i in ids:
        image = root / "JPEGImages" / f"{i}.jpg"
        mask = next((d / f"{i}.png" for d in mask_dirs if (d / f"{i}.png").is_file()), None)
        if not image.is_file():
            no_image.append(i)
        elif mask is None:
            no_mask.append(i)
        else:
            samples.append(Sample(i, image, mask))
    if no_image:
        raise DataError(
            f"{len(no_image)} images listed in {split_file} are missing from {root / 'JPEGImages'}"
            f" (e.g. {no_image[0]}.jpg). Restore them or remove their ids from the split file."
        )
    if no_mask:
        raise DataError(
            f"{len(no_mask)} images listed in {split_file} have no mask in "
            f"{' or '.join(str(d) for d in mask_dirs)} (e.g. {no_mask[0]}.png). "
            + ("For train_aug, add SBD's masks: " + VOC_HOWTO if split == "train_aug" else "")
        )
    return samples


def _files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith("."))


def folder_samples(
    image_dir: str | Path,
    mask_dir: str | Path | None = None,
    mask_suffix: str = "_mask.png",
    image_suffix: str | None = None,
    recursive: bool = False,
) -> list[Sample]:
    """Pairs of an image and its mask, matched by name.

    An image ``<name><image suffix>`` in ``image_dir`` goes with ``<name><mask_suffix>`` in
    ``mask_dir`` (default the same folder), at the same relative path with ``recursive``.
    ``image_suffix`` defaults to the file's extension; Cityscapes' is ``_leftImg8bit.png``
    against ``_gtFine_labelIds.png``.
    """
    image_dir = Path(image_dir).expanduser()
    mask_dir = image_dir if mask_dir is None else Path(mask_dir).expanduser()
    for d, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise DataError(f"{what} folder {d} does not exist; check the path in the recipe.")
    same_dir = mask_dir.resolve() == image_dir.resolve()

    def key(p: Path, root: Path, suffix: str | None) -> str:
        rel = p.relative_to(root).as_posix()
        return rel[: -len(suffix)] if suffix else rel[: -len(p.suffix)]

    masks = {
        key(p, mask_dir, mask_suffix): p
        for p in _files(mask_dir, recursive)
        if p.name.endswith(mask_suffix)
    }
    images = {
        key(p, image_dir, image_suffix): p
        for p in _files(image_dir, recursive)
        if is_image_file(p)
        and (image_suffix is None or p.name.endswith(image_suffix))
        and not (same_dir and p.name.endswith(mask_suffix))
    }
    if not images:
        raise DataError(
            f"no images ({image_suffix or ', '.join(IMAGE_SUFFIXES)}) in {image_dir}"
            f"{' or its sub-folders' if recursive else ''}."
        )
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask:
        raise DataError(
            f"{len(no_mask)} images in {image_dir} have no mask named <name>{mask_suffix} in "
            f"{mask_dir} (e.g. {images[no_mask[0]].name} has no {no_mask[0]}{mask_suffix}). "
            "Add the masks, remove the images, or set mask_suffix / image_suffix."
        )
    if no_image:
        raise DataError(
            f"{len(no_image)} masks in {mask_dir} have no image in {image_dir} (e.g. "
            f"{masks[no_image[0]].name}). Add the images or remove the masks."
        )
    return [Sample(k, images[k], masks[k]) for k in sorted(images)]


def check_sizes(
    samples: Sequence[Sample], on_bad_image: OnBadImage = "error", exif: bool = True
) -> list[Sample]:
    """Compare each image's size with its mask's from the file headers (no decoding); returns
    the samples, less those whose header cannot be read or whose sizes differ when
    ``on_bad_image="skip"`` (each one logged).

    Done when a split is set up, so a mismatched pair stops the run before training starts
    rather than hours into it.
    """
    bad, unreadable = [], []
    for s in samples:
        try:
            with Image.open(s.image) as image, Image.open(s.mask) as mask:
                upright = upright_size(image, exif)  # as the images are read
                if upright != mask.size:
                    bad.append((s, upright, mask.size, upright != image.size))
        except (OSError, ValueError) as e:
            if on_bad_image == "error":
                raise DataError(
                    f"cannot read the header of {s.image} or {s.mask}: {e}. Remove or replace "
                    "the pair (or set on_bad_image: skip to leave such pairs out)."
                ) from None
            unreadable.append(s)
            log.warning(
                "skipping a pair whose header cannot be read: %s, %s (%s)", s.image, s.mask, e
            )
    if bad:
        listing = "; ".join(
            f"{m.mask} is {ms[0]}x{ms[1]}, its image {is_[0]}x{is_[1]}"
            + (
                " (read upright as its EXIF orientation says, stored sideways: if its mask was "
                "drawn on the stored pixels, set exif_orientation: ignore)"
                if turned
                else ""
            )
            for m, is_, ms, turned in bad[:3]
        )
        more = " ..." if len(bad) > 3 else ""
        if on_bad_image == "error":
            raise DataError(
                f"{len(bad)} masks differ in size from their images (width x height): {listing}"
                f"{more}. Re-export these pairs at one size or remove them (or set "
                "on_bad_image: skip to leave them out)."
            )
        log.warning(
            "leaving out %d pairs whose mask and image differ in size (width x height): %s%s",
            len(bad), listing, more,
        )  # fmt: skip
        unreadable += [b[0] for b in bad]
    return [s for s in samples if s not in unreadable]


def read_classes_csv(path: str | Path) -> list[str]:
    """Class names from a Roboflow ``_classes.csv`` ("Pixel Value, Class"), by pixel value."""
    with open(path, newline="") as f:
        rows = [[c.strip() for c in row] for row in csv.reader(f) if row]
    try:
        table = {int(r[0]): r[1] for r in rows[1:]}
    except (ValueError, IndexError):
        raise DataError(
            f"{path}: expected rows 'pixel value, class name' after a header."
        ) from None
    if sorted(table) != list(range(len(table))):
        raise DataError(f"{path}: pixel values must be 0..N-1 without gaps, got {sorted(table)}.")
    return [table[i] for i in range(len(table))]
