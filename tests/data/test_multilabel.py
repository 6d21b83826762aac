"""vtk.data.multilabel: labels from a CSV or from a COCO file's boxes, as multi-hot items."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vtk.data import MultiLabelDataModule
from vtk.errors import DataError


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (20, 16), (90, 40, 10)).save(folder / n)


def test_csv_labels_become_multi_hot_items(tmp_path) -> None:
    _images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "train.csv").write_text("image,labels\na.jpg,sea;sky\nb.jpg,sky\nc.jpg,\n")
    (tmp_path / "val.csv").write_text("a.jpg,person;sea\n")
    with pytest.raises(
        DataError, match=r"val.csv, line 1: labels \['person'\] are not among the classes"
    ):
        MultiLabelDataModule(
            str(tmp_path / "train.csv"), str(tmp_path / "val.csv"), num_workers=0
        ).setup("fit")
    (tmp_path / "val.csv").write_text("a.jpg,sky;sea\n")
    dm = MultiLabelDataModule(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"), image_size=16,
                              resize_size=16, batch_size=2, num_workers=0)  # fmt: skip
    assert dm.class_names == ["sea", "sky"]
    dm.setup("fit")
    labels = [dm.datasets["train"][i]["label"].tolist() for i in range(3)]
    assert labels == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]  # c: no label, a negative everywhere
    assert dm.datasets["val"][0]["label"].tolist() == [1.0, 1.0]
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].dtype == torch.float32 and batch["label"].shape[1] == 2


def test_coco_boxes_become_image_labels(tmp_path) -> None:
    _images(tmp_path / "im", ["x.jpg", "y.jpg"])
    coco = {"images": [{"id": 1, "file_name": "x.jpg", "width": 20, "height": 16},
                       {"id": 2, "file_name": "y.jpg", "width": 20, "height": 16}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 4, 4]},
                            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [5, 5, 4, 4]},
                            {"id": 3, "image_id": 2, "category_id": 4, "bbox": [1, 1, 4, 4]}],
            "categories": [{"id": 9, "name": "cell"}, {"id": 4, "name": "platelet"}]}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(coco))
    dm = MultiLabelDataModule(str(tmp_path / "a.json"), str(tmp_path / "a.json"), train_images=str(tmp_path / "im"),
                              image_size=16, resize_size=16, num_workers=0)  # fmt: skip
    assert dm.class_names == ["platelet", "cell"]  # by category id
    dm.setup("fit")
    assert [dm.datasets["val"][i]["label"].tolist() for i in range(2)] == [[0.0, 1.0], [1.0, 0.0]]
