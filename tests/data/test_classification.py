"""Classification data: image folders as real folders come, CIFAR-10 pickles, bad files."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from vtk.data import CIFAR10DataModule, ImageFolderDataModule
from vtk.data.classification import collate, image_folder_samples
from vtk.errors import DataError


def _folder(root, classes=("cat", "dog"), n=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                    d / f"{i}.jpg"
                )
    return root


def _dm(root, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        root=str(root), **{"image_size": 24, "batch_size": 2, "num_workers": 0, **kwargs}
    )


def test_image_folder_classes_labels_and_batches(tmp_path) -> None:
    root = _folder(tmp_path)
    dm = _dm(root)
    assert dm.num_classes == 2 and dm.class_names == ["cat", "dog"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and batch["label"].dtype == torch.int64
    labels = [s.label for s in dm.datasets["val"].samples]
    assert labels == [0, 0, 0, 1, 1, 1]


def test_every_image_mode_becomes_rgb_in_one_batch(tmp_path) -> None:
    root = _folder(tmp_path, classes=("a",), n=1)
    d = root / "train" / "a"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(d / "gray.png")
    Image.new("RGBA", (40, 30), (1, 2, 3, 128)).save(d / "rgba.png")
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(d / "deep.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).convert("P").save(d / "palette.png")
    dm = _dm(root, batch_size=5)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (5, 3, 24, 24)


def test_non_image_files_are_reported_and_skipped(tmp_path, caplog) -> None:
    root = _folder(tmp_path)
    (root / "train" / "cat" / "notes.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="vtk"):
        samples = image_folder_samples(root / "train")
    assert "skipping 1 files that are not images" in caplog.text and "notes.txt" in caplog.text
    assert len(samples) == 6


def test_undecodable_images_fail_or_are_skipped_with_a_count(tmp_path, caplog) -> None:
    root = _folder(tmp_path)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(
        DataError, match=r"1 files in .*train cannot be read as images: .*broken.jpg"
    ):
        _dm(root).setup("fit")
    with caplog.at_level(logging.WARNING, logger="vtk"):
        dm = _dm(root, on_bad_image="skip")
        dm.setup("fit")
    assert "skipping 1 files" in caplog.text and "broken.jpg" in caplog.text
    assert len(dm.datasets["train"]) == 6


def test_an_image_that_fails_only_when_decoded(tmp_path, caplog) -> None:
    """A truncated JPEG passes the header check and fails in the worker: named, and skipped
    from its batch when asked."""
    root = _folder(tmp_path, n=2)
    big = np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "train" / "cat" / "0.jpg")
    good = (root / "train" / "cat" / "0.jpg").read_bytes()
    (root / "train" / "cat" / "0.jpg").write_bytes(good[: len(good) * 2 // 3])
    dm = _dm(root, batch_size=4)
    dm.setup("fit")
    bad = next(
        i
        for i, s in enumerate(dm.datasets["train"].samples)
        if s.path.name == "0.jpg" and s.label == 0
    )
    with pytest.raises(DataError, match=r"cannot decode .*0.jpg.*on_bad_image: skip"):
        dm.datasets["train"][bad]
    dm = _dm(root, batch_size=4, on_bad_image="skip")
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="vtk"):
        batch = collate([dm.datasets["train"][i] for i in range(4)])
    assert len(batch["label"]) == 3 and "0.jpg" in caplog.text


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(DataError, match=r"training folder .*train does not exist"):
        _dm(tmp_path / "nothing")
    root = _folder(tmp_path / "x")
    (root / "val" / "horse").mkdir()
    dm = _dm(root)
    with pytest.raises(
        DataError, match=r"folders \['horse'\] that are not classes of the training split"
    ):
        dm.setup("validate")


def _cifar(root, n=8):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, n)),
        }
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    return root


def test_cifar10_from_the_python_pickles(tmp_path) -> None:
    root = _cifar(tmp_path / "cifar-10-batches-py")
    dm = CIFAR10DataModule(root=str(root), batch_size=4, num_workers=0)
    assert (
        dm.num_classes == 10
        and dm.class_names[0] == "airplane"
        and dm.mean[0] == pytest.approx(0.4914)
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 40 and len(dm.datasets["val"]) == 8
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 3, 32, 32)


def test_cifar10_missing_or_corrupt(tmp_path) -> None:
    dm = CIFAR10DataModule(root=str(tmp_path / "none"), num_workers=0)
    with pytest.raises(DataError, match=r"data_batch_1 does not exist.*cifar-10-python.tar.gz"):
        dm.setup("fit")
    root = _cifar(tmp_path / "c")
    (root / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="is not a CIFAR-10 python batch"):
        CIFAR10DataModule(root=str(root), num_workers=0).setup("validate")


def test_an_empty_class_folder_is_named_per_split_and_stopped_when_empty_everywhere(
    tmp_path, caplog
) -> None:
    caplog.set_level("WARNING", logger="vtk")
    _folder(tmp_path)
    (tmp_path / "train" / "bird").mkdir()  # a class without training images, in val only
    (tmp_path / "val" / "bird").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "val" / "bird" / "0.jpg")
    data = ImageFolderDataModule(root=str(tmp_path), batch_size=2, num_workers=0)
    assert data.class_names == ["bird", "cat", "dog"]
    data.setup("fit")
    assert "hold no images: ['bird']" in caplog.text and str(tmp_path / "train") in caplog.text
    (tmp_path / "train" / "fish").mkdir()  # in no split at all
    (tmp_path / "val" / "fish").mkdir()
    with pytest.raises(DataError, match=r"class folders \['fish'\] hold no images in any split"):
        ImageFolderDataModule(root=str(tmp_path), batch_size=2, num_workers=0)


# -- augmentation as torchvision's reference trains (--auto-augment, --random-erase, MixUp/CutMix)
@pytest.mark.parametrize("policy", ["ra", "ta_wide", "augmix", "imagenet"])
def test_each_auto_augment_policy_runs_on_the_crop(policy) -> None:
    from torchvision.transforms import v2

    from vtk.data import transforms as T

    transform = T.classification_train(32, auto_augment=policy, random_erase=1.0)
    kind = {"ra": v2.RandAugment, "ta_wide": v2.TrivialAugmentWide, "augmix": v2.AugMix,
            "imagenet": v2.AutoAugment}[policy]  # fmt: skip
    assert isinstance(transform.policy, kind)
    image = np.random.default_rng(0).integers(1, 255, (48, 40, 3), dtype=np.uint8)
    torch.manual_seed(0)
    out = transform(image=image)["image"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    erased = (out == 0).all(0)  # random erasing writes 0 (the mean) into a rectangle
    assert 0 < erased.sum() < 32 * 32
    plain = T.classification_train(32)  # nothing asked: the albumentations pipeline as before
    assert "ClassificationTrain" not in type(plain).__name__


def test_mixup_and_cutmix_make_soft_targets_in_training_only(tmp_path) -> None:
    from types import SimpleNamespace

    for i, name in enumerate(("a", "b", "c")):
        for split in ("train", "val"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / split / name / "x.png")
    dm = ImageFolderDataModule(str(tmp_path), num_workers=0, mixup_alpha=0.2, cutmix_alpha=1.0)
    batch = {"image": torch.rand(8, 3, 16, 16), "label": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    dm.trainer = SimpleNamespace(training=False)  # validation: untouched
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    mixed = dm.on_after_batch_transfer(batch, 0)
    soft = mixed["label"]
    assert soft.shape == (8, 3) and torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft.max(1).values < 1).any()  # mixed: not one-hot
    assert not torch.equal(mixed["image"], batch["image"])


def test_augmentation_options_are_checked_by_name(tmp_path) -> None:
    from vtk.data.multilabel import MultiLabelDataModule
    from vtk.errors import ConfigError

    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(ConfigError, match="auto_augment is one of ra, ta_wide, augmix, imagenet"):
        ImageFolderDataModule(str(tmp_path), auto_augment="randaugment")
    with pytest.raises(ConfigError, match="random_erase must be in"):
        ImageFolderDataModule(str(tmp_path), random_erase=1.5)
    with pytest.raises(ConfigError, match="multi-label data takes neither"):
        MultiLabelDataModule("labels.csv", mixup_alpha=0.2)
