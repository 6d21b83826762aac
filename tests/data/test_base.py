"""vtk.data.base: the prediction folder and batch schema, the bad-image policy of every task's
dataset, and what a DataModule says once (class names, category ids, input spec)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtk.data import CocoDetectionDataModule, VOCSegmentationDataModule
from vtk.data.base import PredictDataset, VisionDataModule, list_collate, list_images
from vtk.data.transforms import eval_transform, to_uint8
from vtk.errors import DataError
from vtk.spec import InputSpec


def _truncated_jpeg(path, size: tuple[int, int] = (48, 40)) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, half the data does not


def test_prediction_lists_images_and_reports_the_rest(tmp_path, vtk_log) -> None:
    for name, size in (("b.png", (20, 10)), ("a.jpg", (30, 16))):
        Image.new("RGB", size).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]
    assert "notes.txt" in vtk_log.text and ".hidden" not in vtk_log.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_one_prediction_batch_schema_and_unreadable_images_left_out(tmp_path, vtk_log) -> None:
    Image.new("RGB", (30, 16)).save(tmp_path / "a.jpg")
    Image.new("RGB", (20, 10)).save(tmp_path / "b.png")
    _truncated_jpeg(tmp_path / "c.jpg")
    dataset = PredictDataset(list_images(tmp_path), eval_transform(InputSpec()))
    batch = list_collate([dataset[i] for i in range(len(dataset))])
    assert batch is not None and set(batch) == {"image", "id", "path", "size"}
    assert batch["id"] == ["a", "b"] and batch["size"] == [(16, 30), (10, 20)]
    assert [tuple(t.shape) for t in batch["image"]] == [(3, 16, 30), (3, 10, 20)]
    assert "c.jpg" in vtk_log.text and "cannot be decoded" in vtk_log.text
    assert list_collate([None, None]) is None


def test_segmentation_bad_image_policy(tmp_path, make_voc, vtk_log) -> None:
    root = make_voc(tmp_path / "VOC2012", {"train": ["a", "b", "c"], "val": ["d"]})
    _truncated_jpeg(root / "JPEGImages" / "b.jpg")

    def data(policy: str) -> VOCSegmentationDataModule:
        dm = VOCSegmentationDataModule(
            root=str(root), train_split="train", crop_size=32, batch_size=2, num_workers=0,
            on_bad_image=policy,
        )  # fmt: skip
        dm.setup("validate")
        dm.datasets["train"] = dm.make_dataset("train")
        return dm

    with pytest.raises(DataError, match=r"b\.jpg.*on_bad_image: skip"):
        data("error").datasets["train"][1]
    dataset = data("skip").datasets["train"]
    assert dataset[1] is None and "b.jpg" in vtk_log.text
    batch = data("skip").collate("train")([dataset[0], dataset[1], dataset[2]])
    assert batch["image"].shape[0] == 2 and batch["id"] == ["a", "c"]


def _coco(tmp_path, names: list[str]) -> tuple:
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        Image.new("RGB", (48, 40), (120, 60, 30)).save(images / name)
    coco = {
        "images": [
            {"id": i + 1, "file_name": n, "width": 48, "height": 40} for i, n in enumerate(names)
        ],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 7,
                "bbox": [4, 4, 20, 20],
                "area": 400,
                "iscrowd": 0,
            }
            for i in range(len(names))
        ],
        "categories": [{"id": 7, "name": "cell"}, {"id": 9, "name": "platelet"}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco))
    return images, ann


def test_detection_bad_image_policy_and_the_datas_ids(tmp_path, vtk_log) -> None:
    images, ann = _coco(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    _truncated_jpeg(images / "b.jpg")
    for policy in ("error", "skip"):
        dm = CocoDetectionDataModule(
            str(images), str(ann), str(ann), on_bad_image=policy, num_workers=0
        )
        dm.setup("fit")
        if policy == "error":
            with pytest.raises(DataError, match=r"b\.jpg.*on_bad_image: skip"):
                dm.datasets["train"][1]
        else:
            assert dm.datasets["train"][1] is None and "b.jpg" in vtk_log.text
    assert (dm.num_classes, dm.class_names, dm.category_ids) == (2, ["cell", "platelet"], [7, 9])
    assert dm.input_spec == InputSpec(mean=None, std=None).to_dict()  # the detector normalises


class Tiny(VisionDataModule):
    def eval_spec(self) -> InputSpec:
        return InputSpec(crop=8)

    def make_dataset(self, split: str):
        return [torch.zeros(1)] * 3


def test_what_the_data_says_once_is_checked() -> None:
    dm = Tiny(3)
    assert dm.class_names == ["0", "1", "2"] and dm.category_ids is None
    assert dm.input_spec["crop"] == 8
    with pytest.raises(DataError, match="2 class names for num_classes=3"):
        Tiny(3, class_names=["a", "b"])
    with pytest.raises(DataError, match="2 category_ids for num_classes=3"):
        Tiny(3, category_ids=[1, 2])
    with pytest.raises(DataError, match="at least 1"):
        Tiny(0)
    dm.setup("fit")
    with pytest.raises(DataError, match="fewer than batch_size=8"):
        dm.train_dataloader()
    with pytest.raises(DataError, match=r"--data\.predict_dir"):
        dm.setup("predict")


def test_input_spec_round_trips_through_plain_values() -> None:
    spec = InputSpec(mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0), resize=40, crop=(32, 24))
    plain = spec.to_dict()
    assert plain == {
        "mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 3.0], "resize": 40, "crop": [32, 24],
        "pad_to": None,
    }  # fmt: skip
    assert InputSpec.from_dict(plain) == spec
    image = np.full((50, 60, 3), 255, np.uint8)
    x = eval_transform(spec)(image=image)["image"]
    assert x.shape == (3, 32, 24)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([0.9, 0.4, 0.7 / 3]))
    assert (to_uint8(x, spec) == 255).all()


def test_vtk_test_needs_a_test_split_or_says_it_evaluates_val(tmp_path, make_voc, vtk_log) -> None:
    """No silent val-as-test: data without a test split stops `vtk test` naming the option;
    the validation split given as the test split is evaluated and logged as such."""
    from vtk.data import ImageFolderDataModule, MaskFolderDataModule

    images, ann = _coco(tmp_path, ["a.jpg", "b.jpg"])
    voc = make_voc(tmp_path / "VOC2012", {"train": ["a", "b"], "val": ["c"]})
    (tmp_path / "folder" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "folder" / "train" / "cat" / "x.png")
    masks = tmp_path / "masks"
    for split in ("train", "val"):
        (masks / split).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(masks / split / "x.jpg")
        Image.new("L", (8, 8)).save(masks / split / "x_mask.png")
    cases = [
        (
            lambda **t: CocoDetectionDataModule(str(images), str(ann), str(ann), **t),
            {"test_annotations": str(ann)}, "--data.test_annotations FILE",
        ),
        (
            lambda **t: VOCSegmentationDataModule(str(voc), train_split="train", **t),
            {"test_split": "val"}, "--data.test_split NAME",
        ),
        (
            lambda **t: ImageFolderDataModule(str(tmp_path / "folder"), **t),
            {"test_split": "val"}, "--data.test_split NAME",
        ),
        (
            lambda **t: MaskFolderDataModule(str(masks / "train"), str(masks / "val"), num_classes=2, **t),
            {"test_dir": str(masks / "val")}, "--data.test_dir DIR",
        ),
    ]  # fmt: skip
    for make, as_val, option in cases:
        dm = make(num_workers=0)
        with pytest.raises(DataError, match=f"{type(dm).__name__} has no test split.*{option}"):
            dm.setup("test")
        if isinstance(dm, ImageFolderDataModule):
            continue  # its val folder is not there; the source is still told apart
        vtk_log.clear()
        dm = make(num_workers=0, **as_val)
        dm.setup("test")
        assert len(dm.datasets["test"]) == len(make(num_workers=0).make_dataset("val"))
        assert "vtk test evaluates the validation" in vtk_log.text, type(dm).__name__
    assert ImageFolderDataModule(str(tmp_path / "folder"), test_split="val").test_source()
    assert ImageFolderDataModule(str(tmp_path / "folder"), test_split="test").test_source() == ""


def _one_folder(root, classes=("ants", "bees", "wasps"), n=10):
    for k, name in enumerate(classes):
        (root / "train" / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (12, 10), (20 * k, 5 * i, 90)).save(root / "train" / name / f"{i}.png")
    return root


def test_val_and_test_carved_out_of_one_folder(tmp_path, vtk_log) -> None:
    """ImageFolder with a train folder only: stratified per class, seeded, disjoint, logged,
    and a checkpoint's split wins over a fresh draw."""
    from vtk.data import ImageFolderDataModule

    root = _one_folder(tmp_path / "set")
    dm = ImageFolderDataModule(str(root), val_fraction=0.2, test_fraction=0.1, num_workers=0)
    dm.setup("fit")
    dm.setup("test")
    parts = {s: {str(x.path) for x in dm.datasets[s].samples} for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [21, 6, 3]
    assert not (parts["train"] & parts["val"]) and not (parts["val"] & parts["test"])
    for split, per_class in (("val", 2), ("test", 1)):  # stratified: the same share of each class
        labels = [x.label for x in dm.datasets[split].samples]
        assert labels.count(0) == labels.count(1) == labels.count(2) == per_class
    assert (
        "data split (val_fraction 0.2, test_fraction 0.1, seed 0) of 30 training images"
        in vtk_log.text
    )
    assert "val 2 ants, 2 bees, 2 wasps" in vtk_log.text
    # another seed draws another split; the checkpoint's state brings the first one back
    other = ImageFolderDataModule(
        str(root), val_fraction=0.2, test_fraction=0.1, split_seed=1, num_workers=0
    )
    other.setup("fit")
    assert {str(x.path) for x in other.datasets["val"].samples} != parts["val"]
    other.load_state_dict(dm.state_dict())
    assert {str(x.path) for x in other.datasets["val"].samples} == parts["val"]
    with pytest.raises(DataError, match="val_fraction is a share of the training images"):
        ImageFolderDataModule(str(root), val_fraction=1.5)


def test_one_mask_folder_and_one_coco_file_are_split_by_image(tmp_path, make_pair) -> None:
    from vtk.data import MaskFolderDataModule

    folder = tmp_path / "all"
    for i in range(10):
        make_pair(folder / f"{i}.jpg", folder / f"{i}_mask.png", 16, 16, seed=i)
    dm = MaskFolderDataModule(
        str(folder), val_fraction=0.3, num_classes=21, num_workers=0, audit=False
    )
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (7, 3)
    with pytest.raises(DataError, match="MaskFolderDataModule has no test split"):
        dm.setup("test")
    with pytest.raises(DataError, match=r"no val images: give --data\.val_dir DIR, or carve them"):
        MaskFolderDataModule(str(folder), num_classes=21, num_workers=0, audit=False).setup("fit")
    images, ann = _coco(tmp_path, [f"{c}.jpg" for c in "abcdefgh"])
    coco = CocoDetectionDataModule(
        str(images), str(ann), str(ann), val_fraction=0.25, num_workers=0
    )
    coco.setup("fit")
    assert (len(coco.datasets["train"]), len(coco.datasets["val"])) == (6, 2)


def test_a_fit_keeps_its_split_in_the_run_folder_and_the_checkpoint(tmp_path) -> None:
    from helpers import quiet_trainer
    from lightning.pytorch.loggers import CSVLogger

    from vtk.data import ImageFolderDataModule
    from vtk.models import Classifier, ResNet
    from vtk.tasks import ClassificationTask

    root = _one_folder(tmp_path / "set", n=6)
    dm = ImageFolderDataModule(str(root), val_fraction=0.34, image_size=8, resize_size=8,
                               batch_size=4, num_workers=0)  # fmt: skip
    task = ClassificationTask(Classifier(ResNet("resnet18"), 3))
    logger = CSVLogger(tmp_path / "runs", name="x")
    trainer = quiet_trainer(tmp_path, max_steps=1, logger=logger, enable_checkpointing=True)
    trainer.fit(task, datamodule=dm)
    written = json.loads((Path(logger.log_dir) / "data_split.json").read_text())
    assert len(written["val"]) == 6 and len(written["train"]) == 12
    ckpt = torch.load(next(Path(logger.log_dir).rglob("*.ckpt")), weights_only=True)
    assert ckpt["ImageFolderDataModule"]["assignment"] == dm.state_dict()["assignment"]


def test_a_run_without_a_logger_leaves_no_split_file_in_the_current_folder(
    tmp_path, monkeypatch
) -> None:
    """``vtk test RECIPE --ckpt_path ...`` has no logger: trainer.log_dir is then the current
    folder, where the split file used to land."""
    from helpers import quiet_trainer

    from vtk.data import ImageFolderDataModule
    from vtk.models import Classifier, ResNet
    from vtk.tasks import ClassificationTask

    root = _one_folder(tmp_path / "set", n=6)
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    dm = ImageFolderDataModule(str(root), val_fraction=0.34, image_size=8, resize_size=8,
                               batch_size=4, num_workers=0)  # fmt: skip
    task = ClassificationTask(Classifier(ResNet("resnet18"), 3))
    trainer = quiet_trainer(tmp_path, max_steps=1, logger=False, default_root_dir=str(here))
    trainer.validate(task, datamodule=dm)
    assert len(dm.datasets["val"]) == 6
    assert not list(here.rglob("data_split.json"))
