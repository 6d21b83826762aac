"""Reading images in every mode real files come in, and masks as class indices."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_sideways_jpeg
from PIL import Image

from vtk.data.io import read_image, read_mask
from vtk.errors import DataError


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.fromarray(np.full((6, 5), 200, np.uint8))),
        ("RGBA", lambda: Image.new("RGBA", (5, 6), (200, 200, 200, 255))),
        (
            "P",
            lambda: Image.new("RGB", (5, 6), (200, 200, 200)).convert(
                "P", palette=Image.Palette.ADAPTIVE
            ),
        ),
        ("I;16", lambda: Image.fromarray(np.full((6, 5), 200 * 257, np.uint16))),
        ("CMYK", lambda: Image.new("RGB", (5, 6), (200, 200, 200)).convert("CMYK")),
    ],
)
def test_any_mode_becomes_8bit_rgb(tmp_path, mode, make) -> None:
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    make().save(path)
    image = read_image(path)
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    assert abs(int(image[0, 0, 0]) - 200) <= 1  # 16-bit is scaled, not clipped to 255


def test_transparent_pixels_become_black(tmp_path) -> None:
    Image.new("RGBA", (2, 2), (255, 255, 255, 0)).save(tmp_path / "t.png")
    assert read_image(tmp_path / "t.png").max() == 0


def test_not_an_image_or_truncated_names_the_file(tmp_path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot decode .*notes.jpg"):
        read_image(tmp_path / "notes.jpg")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot decode .*cut.jpg"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"missing.png does not exist"):
        read_image(tmp_path / "missing.png")


def test_masks_keep_their_indices(tmp_path) -> None:
    values = np.array([[0, 1, 255], [3, 20, 0]], np.uint8)
    p = Image.fromarray(values)
    p.putpalette([0] * 768)
    p.save(tmp_path / "p.png")
    Image.fromarray(values).save(tmp_path / "l.png")
    Image.fromarray(values.astype(np.uint16) * 100).save(tmp_path / "16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), values)
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), values)
    np.testing.assert_array_equal(read_mask(tmp_path / "16.png"), values.astype(np.uint16) * 100)


def test_images_are_read_upright_as_their_exif_orientation_says(tmp_path) -> None:
    write_sideways_jpeg(tmp_path / "phone.jpg")
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (64, 48, 3)  # shown 48 wide, 64 high
    assert image[:16, -16:].mean() > 240 and image[:16, :16].mean() < 15  # now top-right
    assert read_mask_shape_unchanged(tmp_path)


def read_mask_shape_unchanged(tmp_path) -> bool:
    """Masks are class indices as stored: no EXIF rotation (as mmcv reads them, 'unchanged')."""
    mask = Image.fromarray(np.zeros((48, 64), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    mask.save(tmp_path / "mask.png", exif=exif)
    return read_mask(tmp_path / "mask.png").shape == (48, 64)


def test_jpeg_draft_decodes_no_smaller_than_the_detectors_resize(tmp_path) -> None:
    Image.fromarray(np.full((1200, 1600, 3), 128, np.uint8)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg").shape == (1200, 1600, 3)
    # shorter side 200 (longer at most 333): 1/4 (400x300) is the smallest draft not below it
    assert read_image(tmp_path / "big.jpg", fit=(200, 333)).shape == (300, 400, 3)
    assert read_image(tmp_path / "big.jpg", fit=(800, 1333)).shape == (1200, 1600, 3)
    Image.fromarray(np.full((1200, 1600, 3), 128, np.uint8)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", fit=(200, 333)).shape == (1200, 1600, 3)  # not JPEG
