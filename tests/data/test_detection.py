"""COCO detection data: the cases real annotation files have, and every bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from helpers import write_roboflow_yolo, write_sideways_jpeg
from PIL import Image

from vtk.data import CocoDetectionDataModule
from vtk.data.detection import read_coco_json
from vtk.errors import DataError


def write_coco(root, annotations, categories=None, images=None, size=(60, 80)):
    """Images (h, w) = ``size`` named im<id>.jpg and an annotation file at root/ann.json."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = images or [
        {"id": i, "file_name": f"im{i}.jpg", "width": size[1], "height": size[0]} for i in (1, 2, 3)
    ]
    rng = np.random.default_rng(0)
    for im in images:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            root / "images" / im["file_name"]
        )
    categories = categories or [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    (root / "ann.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def _box(i, image_id, cat, bbox, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def _dm(root, **kwargs) -> CocoDetectionDataModule:
    a, im = str(root / "ann.json"), str(root / "images")
    return CocoDetectionDataModule(im, a, a, im, **{"batch_size": 2, "num_workers": 0, **kwargs})


def test_real_file_cases_are_handled_and_reported(tmp_path, caplog) -> None:
    categories = [
        {"id": 0, "name": "zero"},
        {"id": 7, "name": "seven"},
        {"id": 90, "name": "unused"},
    ]
    anns = [
        _box(1, 1, 0, [10, 10, 20, 20]),
        _box(2, 1, 7, [70, 50, 30, 30]),  # leaves the 80x60 image: clipped to 70..80 x 50..60
        _box(3, 2, 7, [5, 5, 0, 10]),  # no width: dropped
        _box(
            4, 2, 0, [0, 0, 40, 40], iscrowd=1, area=900.0
        ),  # crowd: not in the loss, kept for evaluation
    ]  # image 3 has no annotation: a negative
    root = write_coco(tmp_path, anns, categories)
    with caplog.at_level(logging.INFO, logger="vtk"):
        dm = _dm(root)
        dm.setup("fit")
    assert (
        dm.num_classes == 3
        and dm.category_ids == [0, 7, 90]
        and dm.class_names == ["zero", "seven", "unused"]
    )
    text = caplog.text
    assert "1 categories have no annotation: ['unused']" in text
    assert "1 boxes clipped to their image" in text and "1 boxes with no area dropped" in text
    assert (
        "1 crowd regions left out of the loss" in text
        and "2 images without boxes kept as negatives" in text
    )
    train = {r.image_id: r for r in dm.datasets["train"].records}
    np.testing.assert_allclose(train[1].boxes, [[10, 10, 30, 30], [70, 50, 80, 60]])
    assert train[1].labels.tolist() == [0, 1]  # ids 0 and 7 -> labels 0 and 1
    assert (
        len(train[2].boxes) == 0
        and train[2].eval_crowd.tolist() == [1]
        and train[2].eval_area.tolist() == [900.0]
    )
    assert len(train[3].boxes) == 0
    item = dm.datasets["val"][1]  # image 2: the evaluation target keeps the crowd region
    assert item["eval_target"]["iscrowd"].tolist() == [1] and len(item["target"]["boxes"]) == 0


def test_images_without_boxes_can_be_left_out_of_training(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(1, 1, 1, [10, 10, 20, 20])])
    dm = _dm(root, keep_empty=False)
    dm.setup("fit")
    assert (
        len(dm.datasets["train"]) == 1 and len(dm.datasets["val"]) == 3
    )  # evaluation keeps every image


def test_training_flip_moves_the_boxes(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(1, 1, 1, [10, 20, 30, 10])])
    dm = _dm(root, hflip=1.0)
    dm.setup("fit")
    item = dm.datasets["train"][0]
    assert item["image"].dtype == torch.float32 and item["image"].max() <= 1.0
    torch.testing.assert_close(item["target"]["boxes"], torch.tensor([[40.0, 20.0, 70.0, 30.0]]))
    torch.testing.assert_close(
        item["eval_target"]["boxes"], torch.tensor([[10.0, 20.0, 40.0, 30.0]], dtype=torch.float64)
    )  # evaluation targets stay float64, as pycocotools reads them


def test_not_coco_names_the_missing_key(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(
        DataError, match=r"x.json is not a COCO annotation file: it has no 'annotations' list"
    ):
        read_coco_json(path)
    path.write_text(json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match=r"images\[0\] has no 'file_name' \(id 1\)"):
        read_coco_json(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="is not JSON"):
        read_coco_json(path)


def test_unknown_category_and_image_ids_name_the_annotation(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(17, 2, 5, [1, 1, 5, 5])])
    with pytest.raises(
        DataError,
        match=r"annotation 17 \(image 2\) has category_id 5, which is not among the file's categories \[1, 2\]",
    ):
        _dm(root)
    root = write_coco(tmp_path / "b", [_box(3, 9, 1, [1, 1, 5, 5])])
    with pytest.raises(DataError, match="annotation 3 refers to image 9"):
        _dm(root)
    root = write_coco(tmp_path / "c", [_box(4, 1, 1, [1, 1, 5])])
    with pytest.raises(DataError, match=r"annotation 4 \(image 1\) has bbox \[1, 1, 5\]"):
        _dm(root)


def test_missing_image_file_names_file_and_id(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(1, 1, 1, [1, 1, 5, 5])])
    (root / "images" / "im2.jpg").unlink()
    with pytest.raises(
        DataError, match=r"1 images of train .* are missing: image id 2 is .*im2.jpg"
    ):
        _dm(root).setup("fit")


def test_image_size_that_differs_from_the_json(tmp_path) -> None:
    images = [{"id": 1, "file_name": "im1.jpg", "width": 100, "height": 60}]
    root = write_coco(tmp_path, [_box(1, 1, 1, [1, 1, 5, 5])], images=images)
    dm = _dm(root)
    dm.setup("validate")
    with pytest.raises(
        DataError, match=r"image 1 \(.*im1.jpg\) is 80x60 but the annotation file says 100x60"
    ):
        dm.datasets["val"][0]


def test_empty_dataset_after_filtering(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(1, 1, 1, [5, 5, 0, 0])])  # its only box has no area
    with pytest.raises(DataError, match="no images left after filtering"):
        _dm(root, keep_empty=False).setup("fit")


def test_splits_must_share_categories(tmp_path) -> None:
    train = write_coco(tmp_path / "train", [_box(1, 1, 1, [1, 1, 5, 5])])
    val = write_coco(
        tmp_path / "val", [_box(1, 1, 1, [1, 1, 5, 5])], categories=[{"id": 1, "name": "cat"}]
    )
    dm = CocoDetectionDataModule(
        str(train / "images"),
        str(train / "ann.json"),
        val_annotations=str(val / "ann.json"),
        val_images=str(val / "images"),
        num_workers=0,
    )
    with pytest.raises(DataError, match="differ from the validation file's"):
        dm.setup("fit")


def test_exif_rotated_image_with_the_stored_size_in_the_json_is_reported(tmp_path) -> None:
    """A phone photo stored 64x48 with 'rotate 90' in its EXIF is read upright (48x64); an
    annotation file that gives the stored size is named, with both fixes."""
    images = [{"id": 1, "file_name": "im1.jpg", "width": 48, "height": 64}]
    root = write_coco(tmp_path, [_box(1, 1, 1, [1, 1, 5, 5])], images=images)
    write_sideways_jpeg(root / "images" / "im1.jpg")
    dm = _dm(root)
    dm.setup("validate")
    assert tuple(dm.datasets["val"][0]["image"].shape) == (3, 64, 48)  # upright, as the JSON says
    raw = json.loads((root / "ann.json").read_text())
    raw["images"][0].update(width=64, height=48)  # the stored size, as a tool ignoring EXIF writes
    (root / "ann.json").write_text(json.dumps(raw))
    dm = _dm(root)
    dm.setup("validate")
    with pytest.raises(DataError, match=r"im1.jpg\) is stored sideways with an EXIF orientation"):
        dm.datasets["val"][0]


def test_aspect_ratio_groups_and_repeat_factors_from_the_annotations(tmp_path, caplog) -> None:
    """Two landscape and two portrait images (sizes from the JSON); 'dog' in one image of four:
    with t = 0.5 its image is repeated sqrt(0.5 / 0.25) = 1.41 times per epoch."""
    images = [{"id": i, "file_name": f"im{i}.jpg", "width": w, "height": h}
              for i, (w, h) in enumerate([(80, 60), (80, 60), (60, 80), (60, 80)], start=1)]  # fmt: skip
    root = write_coco(tmp_path, [_box(i, i, 1, [1, 1, 20, 20]) for i in (1, 2, 3, 4)]
                      + [_box(5, 3, 2, [5, 5, 20, 20])], images=images)  # fmt: skip
    for im in images:  # the files at the JSON's sizes
        Image.new("RGB", (im["width"], im["height"])).save(root / "images" / im["file_name"])
    dm = _dm(root, aspect_ratio_groups=1, repeat_factor_threshold=0.5, batch_size=2)
    with caplog.at_level(logging.INFO, logger="vtk"):
        dm.setup("fit")
        options = dm.train_sampler_options(dm.datasets["train"])
    assert options["groups"].tolist() == [2, 2, 1, 1]  # bins 0.5, 1, 2: 4/3 above 1, 3/4 below
    np.testing.assert_allclose(options["repeat_factors"], [1, 1, np.sqrt(2), 1])
    assert "aspect-ratio groups" in caplog.text and "repeat-factor sampling (t=0.5)" in caplog.text
    loader = dm.train_dataloader()
    for batch in loader:  # every batch of one orientation
        assert len({tuple(im.shape[1:]) for im in batch["image"]}) == 1


def test_sampling_options_out_of_range_are_clear_errors(tmp_path) -> None:
    root = write_coco(tmp_path, [_box(1, 1, 1, [1, 1, 5, 5])])
    with pytest.raises(DataError, match="repeat_factor_threshold must be in"):
        _dm(root, repeat_factor_threshold=2.0)
    with pytest.raises(DataError, match="aspect_ratio_groups must be 0"):
        _dm(root, aspect_ratio_groups=-1)


@pytest.mark.parametrize("form", ["roboflow", "ultralytics", "polygons"])
def test_a_yolo_export_is_read_as_it_comes(tmp_path, monkeypatch, form) -> None:
    """Both data.yaml forms, from a relative path (once joined twice), with boxes or polygons."""
    from vtk.data import YOLODataModule

    data_yaml = write_roboflow_yolo(tmp_path / "ds", polygons=form == "polygons")
    if form == "ultralytics":  # path: the root, entries relative to it
        data_yaml.write_text(
            "path: .\ntrain: train/images\nval: valid/images\nnames: {0: cell, 1: platelet}\n"
        )
    monkeypatch.chdir(tmp_path)
    dm = YOLODataModule("ds/data.yaml", batch_size=2, num_workers=0)
    assert dm.class_names == ["cell", "platelet"] and dm.category_ids == [1, 2]
    dm.setup("fit")
    assert len(dm.datasets["train"]) == len(dm.datasets["val"]) == 3
    record = {r.path.name: r for r in dm.datasets["val"].records}["b.jpg"]
    np.testing.assert_allclose(record.boxes[0], [16, 15, 32, 33], atol=1e-3)  # 80x60 pixels
    if form == "ultralytics":  # no test entry: no test split
        with pytest.raises(DataError, match="YOLODataModule has no test split"):
            dm.setup("test")
    else:
        dm.setup("test")
        assert len(dm.datasets["test"]) == 3


def test_a_yolo_entry_that_names_nothing_says_what_was_tried(tmp_path) -> None:
    from vtk.data import YOLODataModule

    data_yaml = write_roboflow_yolo(tmp_path / "ds")
    data_yaml.write_text(
        "train: ../training/images\nval: ../valid/images\nnames: [cell, platelet]\n"
    )
    with pytest.raises(
        DataError,
        match=r"the train entry '../training/images' names no folder or list: tried .*ds/../training/images and .*ds/training/images",
    ):
        YOLODataModule(str(data_yaml))
