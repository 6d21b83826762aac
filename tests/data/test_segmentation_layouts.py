"""Segmentation sets as they are laid out on disk, without renaming a file: CamVid as SegNet
ships it, Cityscapes, ADE20K, and a CVAT "Segmentation mask" export with colour masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vtk.data import MaskFolderDataModule, VOCSegmentationDataModule
from vtk.data.segmentation_layouts import ADE20KDataModule, CityscapesDataModule


def _image(path: Path, size=(32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
    ).save(path)


def _mask(path: Path, value_rows: list[int], size=(32, 24)) -> None:
    """A mask whose rows hold the given values in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.array([value_rows[i % len(value_rows)] for i in range(size[1])], np.uint8)
    Image.fromarray(np.repeat(mask[:, None], size[0], axis=1)).save(path)


def _values(dm, split: str = "val") -> set[int]:
    dm.setup("validate") if split == "val" else dm.setup("fit")
    return {int(v) for item in dm.datasets[split] for v in item["mask"].unique()}


def test_camvid_sibling_folders_and_void_11(tmp_path) -> None:
    root = tmp_path / "CamVid"
    for split in ("train", "val"):
        for name in ("0001TP_006690", "0006R0_f00930"):
            _image(root / split / f"{name}.png")
            _mask(root / f"{split}annot" / f"{name}.png", [0, 5, 10, 11])
    dm = MaskFolderDataModule(
        train_dir=str(root / "train"), val_dir=str(root / "val"),
        train_masks=str(root / "trainannot"), val_masks=str(root / "valannot"),
        mask_suffix=".png", num_classes=11, ignore_index=11, num_workers=0,
    )  # fmt: skip
    assert _values(dm) == {0, 5, 10, 11}  # 11 stays the ignore label, not an error
    assert dm.ignore_index == 11


def test_cityscapes_layout_and_train_ids(tmp_path) -> None:
    root = tmp_path / "cityscapes"
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        name = f"{city}_000000_000019"
        _image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")
        _mask(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", [7, 26, 0, 33])
        _mask(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", [1])  # not ours
    dm = CityscapesDataModule(root=str(root), num_workers=0)
    assert dm.num_classes == 19 and dm.class_names[13] == "car"
    assert _values(dm) == {0, 13, 255, 18}  # road, car, unlabeled -> ignore, bicycle
    assert dm.datasets["val"].samples[0].id == "frankfurt/frankfurt_000000_000019"


def test_ade20k_layout_reduces_the_zero_label(tmp_path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        _image(root / "images" / split / f"ADE_{split}_00000001.jpg")
        _mask(root / "annotations" / split / f"ADE_{split}_00000001.png", [0, 1, 150])
    dm = ADE20KDataModule(root=str(root), num_workers=0)
    assert dm.num_classes == 150 and dm.class_names[0] == "wall"
    assert _values(dm) == {255, 0, 149}


def test_cvat_segmentation_mask_export(tmp_path) -> None:
    """VOC layout with colour masks and a labelmap.txt: classes, names and colours from it."""
    root = tmp_path / "export"
    (root / "labelmap.txt").parent.mkdir(parents=True)
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                       "road:128,64,128::\ncar:0,0,142::\n")  # fmt: skip
    colours = {0: (0, 0, 0), 1: (128, 64, 128), 2: (0, 0, 142)}
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for name in names:
            _image(root / "JPEGImages" / f"{name}.jpg")
            rgb = np.zeros((24, 32, 3), np.uint8)
            rgb[:8], rgb[8:16], rgb[16:] = colours[0], colours[1], colours[2]
            (root / "SegmentationClass").mkdir(exist_ok=True)
            Image.fromarray(rgb).save(root / "SegmentationClass" / f"{name}.png")
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("\n".join(names) + "\n")
    dm = VOCSegmentationDataModule(
        root=str(root), train_split="train", palette=str(root / "labelmap.txt"), num_workers=0
    )
    assert dm.num_classes == 3 and dm.class_names == ["background", "road", "car"]
    assert _values(dm) == {0, 1, 2}
