"""EXIF orientation: images and their labels read in one convention. A photo stored sideways,
upside down or mirrored, with an orientation tag, and its mask or boxes drawn either on the
upright image (CVAT, Roboflow, LabelMe) or on the stored pixels: ``exif_orientation: apply``
(default) and ``ignore`` each put the labels on the object, for orientations 2, 3 and 6,
square and not; the setup says how many images are tagged and which convention is in force;
a sideways photo whose mask is in the other convention is stopped naming the option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vtk.data import CocoDetectionDataModule, MaskFolderDataModule
from vtk.errors import DataError

#: orientation -> the PIL transpose that shows the stored pixels upright, and its inverse
SHOW = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 6: Image.ROTATE_270}
INVERSE = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 6: Image.ROTATE_90}


def _upright(h: int, w: int) -> tuple[Image.Image, Image.Image]:
    """An upright photo with a white block near its top-left corner, and the block's mask."""
    a = np.zeros((h, w, 3), np.uint8)
    m = np.zeros((h, w), np.uint8)
    a[4:16, 6:20] = 255
    m[4:16, 6:20] = 1
    return Image.fromarray(a), Image.fromarray(m)


def _write(folder, name: str, orientation: int, drawn_on: str, h: int, w: int) -> None:
    image, mask = _upright(h, w)
    stored = image.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    folder.mkdir(parents=True, exist_ok=True)
    stored.save(folder / f"{name}.jpg", exif=exif, quality=100)
    (mask if drawn_on == "upright" else mask.transpose(INVERSE[orientation])).save(
        folder / f"{name}_mask.png"
    )


def _overlap(item) -> float:
    """The share of the labelled pixels that are white in the image as read."""
    mask = item["mask"].numpy()
    bright = item["image"].numpy().mean(0) > 1.0  # normalised: white is about 2
    return float(bright[mask == 1].mean())


@pytest.mark.parametrize("size", [(48, 64), (48, 48)], ids=["non-square", "square"])
@pytest.mark.parametrize("orientation", [2, 3, 6])
@pytest.mark.parametrize(("drawn_on", "option"), [("upright", "apply"), ("stored", "ignore")])
def test_masks_fit_their_images_in_either_convention(
    tmp_path, vtk_log, size, orientation, drawn_on, option
) -> None:
    _write(tmp_path / "train", "a", orientation, drawn_on, *size)
    data = MaskFolderDataModule(
        train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "train"), num_classes=2,
        num_workers=0, batch_size=1, crop_size=size, scale_range=(1.0, 1.0),
        exif_orientation=option,
    )  # fmt: skip
    data.setup("validate")
    assert _overlap(data.datasets["val"][0]) == 1.0
    assert f"orientation {orientation}" in vtk_log.text
    assert ("turned upright" if option == "apply" else "reads their stored pixels") in vtk_log.text


@pytest.mark.parametrize("orientation", [2, 3])
def test_the_other_convention_is_not_silent(tmp_path, vtk_log, orientation) -> None:
    """Sizes match, so nothing can be caught: the warning names the tagged images and the
    option that reads the other convention."""
    _write(tmp_path / "train", "a", orientation, "stored", 48, 64)
    data = MaskFolderDataModule(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "train"),
                                num_classes=2, num_workers=0)  # fmt: skip
    data.setup("validate")
    assert _overlap(data.datasets["val"][0]) < 0.5  # wrong, as the warning says it might be
    assert "1 images carry an EXIF orientation" in vtk_log.text
    assert "set exif_orientation: ignore" in vtk_log.text


def test_a_sideways_photo_with_a_stored_pixels_mask_is_stopped_naming_the_option(tmp_path) -> None:
    _write(tmp_path / "train", "a", 6, "stored", 48, 64)
    data = MaskFolderDataModule(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "train"),
                                num_classes=2, num_workers=0)  # fmt: skip
    with pytest.raises(DataError, match="set exif_orientation: ignore"):
        data.setup("validate")


@pytest.mark.parametrize("orientation", [2, 3, 6])
@pytest.mark.parametrize(("drawn_on", "option"), [("upright", "apply"), ("stored", "ignore")])
def test_detection_boxes_fit_their_images_in_either_convention(
    tmp_path, orientation, drawn_on, option
) -> None:
    _write(tmp_path / "images", "a", orientation, drawn_on, 48, 64)
    mask = np.asarray(Image.open(tmp_path / "images" / "a_mask.png"))
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    h, w = mask.shape
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [int(x1), int(y1), int(x2 - x1), int(y2 - y1)],
                         "area": int((x2 - x1) * (y2 - y1))}],
        "categories": [{"id": 1, "name": "block"}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(coco))
    data = CocoDetectionDataModule(
        train_images=str(tmp_path / "images"), train_annotations=str(tmp_path / "a.json"),
        val_annotations=str(tmp_path / "a.json"), num_workers=0, exif_orientation=option,
    )  # fmt: skip
    data.setup("validate")
    item = data.datasets["val"][0]
    bx1, by1, bx2, by2 = item["target"]["boxes"][0].round().int().tolist()
    inside = item["image"][:, by1:by2, bx1:bx2]
    assert float(inside.mean()) > 0.95  # the box holds the white block
