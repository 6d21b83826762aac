"""Segmentation datasets and DataModules: the VOC and folder layouts, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vtk.data import MaskFolderDataModule, VOCSegmentationDataModule
from vtk.data.masks import MaskDecoder
from vtk.data.segmentation import (
    SegmentationDataset,
    collate,
    folder_samples,
    read_classes_csv,
    voc_samples,
)
from vtk.data.transforms import eval_transform
from vtk.errors import DataError
from vtk.spec import IGNORE_INDEX, InputSpec


def _voc(root, **kwargs) -> VOCSegmentationDataModule:
    defaults = dict(train_split="train", crop_size=32, batch_size=2, num_workers=0)
    return VOCSegmentationDataModule(root=str(root), **{**defaults, **kwargs})


def test_voc_datamodule_batches(voc_root) -> None:
    dm = _voc(voc_root)
    assert dm.num_classes == 21 and dm.class_names[15] == "person"
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    # evaluation keeps every image at its own size, as lists (no crop, no padding)
    assert [tuple(x.shape) for x in val["image"]] == [(3, 40, 48)] * 2
    assert val["size"] == [(40, 48), (40, 48)]
    assert set(torch.cat([m.flatten() for m in val["mask"]]).tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_eval_padding_is_ignored_and_top_left() -> None:
    image = np.full((20, 30, 3), 128, np.uint8)
    mask = np.ones((20, 30), np.uint8)
    out = eval_transform(InputSpec(pad_to=32))(image=image, mask=mask)
    assert out["image"].shape == (3, 32, 32)
    assert (out["mask"][:20, :30] == 1).all()
    assert (out["mask"][20:, :] == IGNORE_INDEX).all() and (
        out["mask"][:, 30:] == IGNORE_INDEX
    ).all()


def test_padding_uses_the_configured_ignore_label(tmp_path) -> None:
    """A dataset whose unscored label is 11 (CamVid's void): training crops larger than the
    image and evaluation padding fill masks with 11, never the default 255."""
    from vtk.data import CamVidDataModule

    root = tmp_path / "CamVid"
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / split / f"{name}.png")
            Image.fromarray(np.full((20, 30), 3, np.uint8)).save(
                root / f"{split}annot" / f"{name}.png"
            )
    dm = CamVidDataModule(root=str(root), crop_size=40, scale_range=(1.0, 1.0), batch_size=2,
                          num_workers=0)  # fmt: skip
    dm.setup("fit")
    assert dm.ignore_index == 11
    mask = dm.datasets["train"][0]["mask"]
    assert mask.shape == (40, 40) and set(mask.unique().tolist()) == {3, 11}
    out = dm.eval_transform()  # the data's evaluation pipeline, padded by an input spec
    padded = eval_transform(InputSpec(pad_to=32), dm.ignore_index)(
        image=np.zeros((20, 30, 3), np.uint8), mask=np.full((20, 30), 3, np.uint8)
    )
    assert set(padded["mask"].unique().tolist()) == {3, 11}
    assert out(image=np.zeros((20, 30, 3), np.uint8), mask=np.zeros((20, 30), np.uint8))[
        "mask"
    ].shape == (20, 30)  # evaluation keeps the image's size


def test_collate_pads_images_of_different_sizes() -> None:
    items = [
        {
            "image": torch.ones(3, 4, 5),
            "mask": torch.zeros(4, 5, dtype=torch.long),
            "id": "a",
            "path": "a",
            "size": (4, 5),
        },
        {
            "image": torch.ones(3, 6, 3),
            "mask": torch.zeros(6, 3, dtype=torch.long),
            "id": "b",
            "path": "b",
            "size": (6, 3),
        },
    ]
    batch = collate(items)
    assert batch["image"].shape == (2, 3, 6, 5)
    assert (
        batch["mask"][0, 4:, :].eq(IGNORE_INDEX).all() and batch["image"][0, :, 4:, :].eq(0).all()
    )


def test_missing_root_says_how_to_get_the_data(tmp_path) -> None:
    dm = _voc(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"not found at .*nowhere.*host.robots.ox.ac.uk"):
        dm.setup("fit")


def test_missing_split_file_lists_the_splits(voc_root) -> None:
    with pytest.raises(
        DataError, match=r"train_aug.txt does not exist; splits found: \['train', 'val'\]"
    ):
        _voc(voc_root, train_split="train_aug").setup("fit")


def test_image_without_mask_and_mask_without_image(voc_root) -> None:
    (voc_root / "SegmentationClass" / "2007_000001.png").unlink()
    with pytest.raises(
        DataError, match=r"1 images listed in .*train.txt have no mask .*2007_000001.png"
    ):
        voc_samples(voc_root, "train")
    (voc_root / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(DataError, match=r"missing from .*JPEGImages \(e.g. 2007_000002.jpg\)"):
        voc_samples(voc_root, "train")


def test_mask_of_another_size_names_the_file(voc_root) -> None:
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(
        voc_root / "SegmentationClass" / "2007_000003.png"
    )
    dataset = SegmentationDataset(
        voc_samples(voc_root, "train"), MaskDecoder(21), eval_transform(InputSpec())
    )
    with pytest.raises(
        DataError, match=r"2007_000003.png is 10x10 but its image .*2007_000003.jpg is 48x40"
    ):
        dataset[3]


def test_size_mismatch_stops_the_setup_before_training(voc_root) -> None:
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(
        voc_root / "SegmentationClass" / "2007_000005.png"
    )
    with pytest.raises(
        DataError, match=r"1 masks differ in size .*2007_000005.png is 12x10, its image 48x40"
    ):
        _voc(voc_root).setup("fit")


def test_size_mismatch_with_skip_leaves_the_pair_out_and_says_so(voc_root, caplog) -> None:
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(
        voc_root / "SegmentationClass" / "2007_000005.png"
    )
    dm = _voc(voc_root, on_bad_image="skip")
    total = len(voc_samples(voc_root, "train"))
    with caplog.at_level("WARNING", logger="vtk"):
        dm.setup("fit")
    assert len(dm.datasets["train"]) == total - 1
    assert "2007_000005" not in {s.id for s in dm.datasets["train"].samples}
    assert "leaving out 1 pairs whose mask and image differ in size" in caplog.text
    assert "2007_000005.png is 12x10, its image 48x40" in caplog.text


def test_mask_values_out_of_range_name_the_file_and_values(voc_root) -> None:
    bad = np.zeros((40, 48), np.uint8)
    bad[0, 0], bad[1, 1], bad[2, 2] = 30, 21, IGNORE_INDEX
    Image.fromarray(bad).save(voc_root / "SegmentationClass" / "2007_000004.png")
    dataset = SegmentationDataset(
        voc_samples(voc_root, "train"), MaskDecoder(21), eval_transform(InputSpec())
    )
    with pytest.raises(
        DataError,
        match=r"2007_000004.png has values 21 \(1 pixels\), 30 \(1 pixels\), but num_classes is 21",
    ):
        dataset[4]


def test_train_and_val_must_not_share_images(make_voc, tmp_path) -> None:
    root = make_voc(tmp_path / "VOC2012", {"train": ["a", "b", "c"], "val": ["c", "d"]})
    with pytest.raises(DataError, match=r"1 images are in both the train and the val split"):
        _voc(root).setup("fit")


def test_batch_larger_than_the_split(voc_root) -> None:
    dm = _voc(voc_root, batch_size=8)
    dm.setup("fit")
    with pytest.raises(DataError, match="fewer than batch_size=8"):
        dm.train_dataloader()


# -- image/mask folders -----------------------------------------------------------------------
def _folder(tmp_path, make_pair, names=("x", "y", "z"), suffix="_mask.png"):
    for i, name in enumerate(names):
        make_pair(tmp_path / f"{name}.jpg", tmp_path / f"{name}{suffix}", 24, 32, seed=i)
    return tmp_path


def test_folder_pairs_and_roboflow_classes_csv(tmp_path, make_pair) -> None:
    for split in ("train", "valid"):
        d = _folder(tmp_path / split, make_pair)
        (d / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, Road\n2, bin\n")
    dm = MaskFolderDataModule(
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "valid"),
        crop_size=16,
        batch_size=2,
        num_workers=0,
    )
    assert dm.num_classes == 3 and dm.class_names == ["background", "Road", "bin"]
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["mask"].shape == (2, 16, 16)
    # a num_classes that disagrees with the file is named as that, not as a count of names
    table = tmp_path / "train" / "_classes.csv"
    with pytest.raises(
        DataError,
        match=rf"num_classes is 2, but {table} lists 3 classes \(background, Road, bin\).*leave --data.num_classes out",
    ):
        MaskFolderDataModule(str(tmp_path / "train"), str(tmp_path / "valid"), num_classes=2)


def test_folder_with_separate_mask_folder(tmp_path, make_pair) -> None:
    for name in ("a", "b"):
        make_pair(
            tmp_path / "images" / f"{name}.png", tmp_path / "masks" / f"{name}.png", 8, 8, seed=0
        )
    samples = folder_samples(tmp_path / "images", tmp_path / "masks", mask_suffix=".png")
    assert [s.id for s in samples] == ["a", "b"]


def test_folder_image_without_mask_and_mask_without_image(tmp_path, make_pair) -> None:
    d = _folder(tmp_path, make_pair)
    (d / "y_mask.png").unlink()
    with pytest.raises(
        DataError,
        match=r"1 images in .* have no mask named <name>_mask.png .*y.jpg has no y_mask.png",
    ):
        folder_samples(d)
    (d / "y.jpg").unlink()
    (d / "z.jpg").unlink()
    with pytest.raises(DataError, match=r"1 masks in .* have no image .*z_mask.png"):
        folder_samples(d)


def test_folder_needs_num_classes_without_classes_csv(tmp_path, make_pair) -> None:
    d = _folder(tmp_path, make_pair)
    with pytest.raises(DataError, match=r"set --data\.num_classes"):
        MaskFolderDataModule(train_dir=str(d), val_dir=str(d))
    with pytest.raises(DataError, match="2 class names for num_classes=3"):
        MaskFolderDataModule(
            train_dir=str(d), val_dir=str(d), num_classes=3, class_names=["a", "b"]
        )


def test_colour_masks_are_refused(tmp_path, make_pair) -> None:
    d = _folder(tmp_path, make_pair, names=("x",))
    Image.new("RGB", (32, 24), (128, 0, 0)).save(d / "x_mask.png")
    dataset = SegmentationDataset(folder_samples(d), MaskDecoder(3), eval_transform(InputSpec()))
    with pytest.raises(DataError, match=r"x_mask.png is a colour image \(mode RGB\)"):
        dataset[0]


def test_bad_classes_csv(tmp_path) -> None:
    path = tmp_path / "_classes.csv"
    path.write_text("Pixel Value, Class\n0, background\n2, road\n")
    with pytest.raises(DataError, match="without gaps"):
        read_classes_csv(path)


def test_exif_rotated_image_is_checked_upright_against_its_mask(voc_root) -> None:
    """A 48x40 JPEG stored sideways (40x48 with 'rotate 90' in EXIF) is read upright, so its
    48x40 mask fits; a mask at the stored size is named, with the reason."""
    stored = Image.fromarray(np.zeros((48, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(voc_root / "JPEGImages" / "2007_000005.jpg", exif=exif)
    dm = _voc(voc_root)
    dm.setup("fit")  # the 48x40 mask fits the upright image
    item = next(s for s in dm.datasets["train"].samples if s.id == "2007_000005")
    assert item is not None
    Image.fromarray(np.zeros((48, 40), np.uint8)).save(
        voc_root / "SegmentationClass" / "2007_000005.png"
    )
    with pytest.raises(
        DataError, match=r"2007_000005.png is 40x48, its image 48x40 \(read upright as its EXIF"
    ):
        _voc(voc_root).setup("fit")
