"""vtk.data.masks: label conventions decoded as masks are read (label map, reduced zero label,
another ignore index, colour masks), and the audit's errors and counts, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import vtk.data.masks as masks
from vtk.data.masks import (
    MaskDecoder,
    SplitCounts,
    audit,
    count_split,
    median_frequency_weights,
    read_labelmap,
)
from vtk.errors import ConfigError, DataError


def _png(path, values) -> None:
    Image.fromarray(np.asarray(values, np.uint8)).save(path)


def test_label_map_maps_listed_values_and_passes_the_rest(tmp_path) -> None:
    _png(tmp_path / "m.png", [[0, 7, 26], [33, 5, 2]])
    decoder = MaskDecoder(19, label_map={7: 0, 26: 13, 33: 18, 5: "ignore"})
    assert decoder.read(tmp_path / "m.png").tolist() == [[0, 0, 13], [18, 255, 2]]


def test_reduce_zero_label_ignores_zero_and_shifts_the_rest(tmp_path) -> None:
    _png(tmp_path / "m.png", [[0, 1, 150], [255, 2, 0]])
    decoder = MaskDecoder(150, reduce_zero_label=True)
    assert decoder.read(tmp_path / "m.png").tolist() == [[255, 0, 149], [255, 1, 255]]


def test_both_conventions_at_once_and_bad_targets_are_refused() -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        MaskDecoder(3, label_map={1: 0}, reduce_zero_label=True)
    with pytest.raises(ConfigError, match="label_map maps 9 to 5"):
        MaskDecoder(3, label_map={9: 5})


def test_another_ignore_index_and_values_outside_the_classes(tmp_path) -> None:
    """CamVid as SegNet ships it: 11 classes, void = 11."""
    decoder = MaskDecoder(11, ignore_index=11)
    mask = np.array([[0, 10, 11], [11, 12, 12]], np.uint8)
    decoder.check(mask[:1], "a.png")  # classes and void only: fine
    with pytest.raises(DataError, match=r"b.png has values 12 \(2 pixels\), but num_classes is 11"):
        decoder.check(mask, "b.png")


def test_colour_masks_through_a_palette(tmp_path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, :] = (0, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    decoder = MaskDecoder(3, palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    assert decoder.read(tmp_path / "m.png").tolist() == [[0, 1, 0], [2, 2, 2]]
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"bad.png has colours .*\(1, 2, 3\) on 1 pixels"):
        decoder.read(tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="2 colours for num_classes=3"):
        MaskDecoder(3, palette=[[0, 0, 0], [1, 1, 1]])


def test_cvat_labelmap(tmp_path) -> None:
    path = tmp_path / "labelmap.txt"
    path.write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\n")
    assert read_labelmap(path) == (["background", "car"], [(0, 0, 0), (250, 50, 83)])
    path.write_text("car:250,50::\n")
    with pytest.raises(DataError, match="line 1: expected 'name:r,g,b"):
        read_labelmap(path)


def _counts(pixels: dict[int, int], image_pixels: dict[int, int] | None = None) -> SplitCounts:
    return SplitCounts(pixels, image_pixels or dict(pixels), {v: f"m{v}.png" for v in pixels})


def test_audit_refuses_a_two_class_set_of_0_and_255() -> None:
    with pytest.raises(DataError, match=r"only 0 and 255 .* set label_map: \{255: 1\}"):
        audit(MaskDecoder(2), {"train": _counts({0: 90, 255: 10})}, ["bg", "fg"])
    # the fix: 255 is the foreground
    table = audit(
        MaskDecoder(2, label_map={255: 1}), {"train": _counts({0: 90, 1: 10})}, ["bg", "fg"]
    )
    assert "fg" in table


def test_audit_refuses_stray_values_naming_a_file_and_warns_on_classes_only_in_val(vtk_log) -> None:
    with pytest.raises(
        DataError, match=r"the val masks hold values .*: 7 \(3 pixels, e.g. m7.png\)"
    ):
        audit(MaskDecoder(3), {"train": _counts({0: 5}), "val": _counts({0: 5, 7: 3})}, list("abc"))
    table = audit(
        MaskDecoder(3),
        {"train": _counts({0: 5, 1: 2}), "val": _counts({0: 5, 2: 4, 255: 1})},
        "abc",
    )
    assert "classes in the val masks but in no training mask: ['c']" in vtk_log.text
    lines = table.splitlines()
    assert lines[0].startswith("mask audit") and "train" in lines[1] and "val" in lines[1]
    assert any(line.split()[:2] == ["255", "(ignore)"] for line in lines)
    assert "no pixel in any" not in vtk_log.text


def test_audit_names_classes_that_occur_in_no_split(vtk_log) -> None:
    """TQB's "table": no pixel anywhere, so no row and no word (and test/IoU/table is nan)."""
    table = audit(
        MaskDecoder(4),
        {"train": _counts({0: 5, 1: 2}), "val": _counts({0: 5, 1: 4})},
        ["bg", "chair", "table", "lamp"],
    )
    assert "classes with no pixel in any train/val mask: table (2), lamp (3)" in vtk_log.text
    rows = {line.split()[1]: line.split()[2:] for line in table.splitlines()[2:]}
    assert rows["table"] == ["0", "0"] and rows["lamp"] == ["0", "0"]


def test_counts_are_cached_per_file_list(tmp_path, monkeypatch) -> None:
    files = []
    for i, values in enumerate([[[0, 1], [1, 1]], [[0, 0], [2, 255]]]):
        _png(tmp_path / f"{i}.png", values)
        files.append(tmp_path / f"{i}.png")
    decoder = MaskDecoder(3)
    counts = count_split(decoder, files)
    assert counts.pixels == {0: 3, 1: 3, 2: 1, 255: 1}
    assert counts.image_pixels == {0: 8, 1: 4, 2: 4, 255: 4}
    monkeypatch.setattr(masks, "_count", lambda *a: (_ for _ in ()).throw(AssertionError("read")))
    assert count_split(decoder, files).pixels == counts.pixels  # from the cache
    _png(files[0], [[1, 1], [1, 1]])  # a changed file is read again
    with pytest.raises(AssertionError, match="read"):
        count_split(decoder, files)


def test_median_frequency_weights_by_hand() -> None:
    # class 0: 60 px over images of 100 -> 0.6; class 1: 10 / 50 -> 0.2; class 2: 30 / 100 -> 0.3
    counts = _counts({0: 60, 1: 10, 2: 30}, {0: 100, 1: 50, 2: 100})
    weights = median_frequency_weights(counts, 4)
    assert weights == pytest.approx([0.3 / 0.6, 0.3 / 0.2, 1.0, 0.0])  # class 3 absent: 0
    assert SplitCounts.from_json(json.loads(json.dumps(counts.to_json()))) == counts  # the cache


def _jpeg_masks(folder, colours, n: int = 3):
    """Image/mask pairs whose masks were saved as JPEG (quality 75), and the true labels."""
    from PIL import ImageDraw

    folder.mkdir(parents=True)
    truth = []
    for i in range(n):
        labels = Image.new("L", (64, 48), 0)
        ImageDraw.Draw(labels).ellipse((8 + 4 * i, 6, 40 + 4 * i, 40), fill=1)
        if len(colours) > 2:
            ImageDraw.Draw(labels).rectangle((44, 10, 60, 30), fill=2)
        a = np.asarray(labels)
        drawn = np.asarray(colours, np.uint8)[a]  # (H, W) grey or (H, W, 3) colour
        Image.fromarray(drawn).save(folder / f"{i}_mask.jpg", quality=75)
        Image.new("RGB", (64, 48), (90, 90, 90)).save(folder / f"{i}.jpg")
        truth.append(a)
    return truth


def test_jpeg_binary_masks_are_recognised_and_read_with_a_threshold(tmp_path, vtk_log) -> None:
    """Masks of 0 and 255 saved as JPEG: values near both plus noise. The audit says what it
    is and the fix; mask_threshold reads them back to the drawn labels."""
    from vtk.data import MaskFolderDataModule

    truth = _jpeg_masks(tmp_path / "train", [0, 255])
    _jpeg_masks(tmp_path / "val", [0, 255], n=1)
    args = dict(mask_suffix="_mask.jpg", num_classes=2, crop_size=32, batch_size=2, num_workers=0)
    dm = MaskFolderDataModule(str(tmp_path / "train"), str(tmp_path / "val"), **args)
    with pytest.raises(DataError, match=r"look JPEG-compressed .*mask_threshold: 128"):
        dm.setup("fit")
    dm = MaskFolderDataModule(
        str(tmp_path / "train"), str(tmp_path / "val"), mask_threshold=128, **args
    )
    dm.setup("fit")
    assert "look JPEG" not in vtk_log.text
    read = [dm.decoder.read(tmp_path / "train" / f"{i}_mask.jpg") for i in range(3)]
    assert all(set(np.unique(r)) == {0, 1} for r in read)
    agreement = np.mean([(r == t).mean() for r, t in zip(read, truth)])
    assert agreement > 0.99, agreement
    with pytest.raises(ConfigError, match="num_classes is 3; set num_classes: 2"):
        MaskDecoder(3, threshold=128)


def test_jpeg_colour_masks_read_with_the_nearest_palette_colour(tmp_path) -> None:
    colours = [(0, 0, 0), (200, 30, 30), (30, 30, 200)]
    truth = _jpeg_masks(tmp_path / "masks", colours)
    with pytest.raises(DataError, match="colours that are not in the palette"):
        MaskDecoder(3, palette=colours).read(tmp_path / "masks" / "0_mask.jpg")
    decoder = MaskDecoder(3, palette=colours, nearest_colour=True)
    read = [decoder.read(tmp_path / "masks" / f"{i}_mask.jpg") for i in range(3)]
    agreement = np.mean([(r == t).mean() for r, t in zip(read, truth)])
    assert agreement > 0.99, agreement
    with pytest.raises(ConfigError, match="nearest_colour needs the palette"):
        MaskDecoder(3, nearest_colour=True)
