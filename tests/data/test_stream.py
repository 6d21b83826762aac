"""Streaming: a mask folder and a COCO set written as LitData chunks by ``vtk optimize`` and read
back from the folder and from an S3 server on loopback (moto's), item for item and metric for
metric as the files give them; and the inputs it refuses."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import quiet_trainer

from vtk.data import (
    CIFAR10DataModule,
    CocoDetectionDataModule,
    ImageFolderDataModule,
    MaskFolderDataModule,
    MultiLabelDataModule,
)
from vtk.data.stream import StoredFile, optimize, read_split
from vtk.data.stream import main as stream_main
from vtk.errors import DataError
from vtk.recipe import Recipe, find_recipe

pytest.importorskip("litdata")

NAMES = ["background", "a", "b"]


def _mask_folder(root: Path, make_pair) -> Path:
    for split, n in (("train", 6), ("val", 3)):
        for i in range(n):
            make_pair(root / split / f"{split}{i}.jpg", root / split / f"{split}{i}_mask.png",
                      40, 48, seed=i + 10 * (split == "val"))  # fmt: skip
    return root


def _recipe(tmp_path: Path, base: str, data: dict) -> Path:
    """The demo recipe ``base`` with its data replaced."""
    config = yaml.safe_load(find_recipe(base).read_text())
    config["data"] = data
    path = tmp_path / f"{base}_files.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _seg_data(root: Path, **extra) -> dict:
    args = {"train_dir": str(root / "train"), "val_dir": str(root / "val"), "num_classes": 3,
            "class_names": NAMES, "crop_size": 32, "batch_size": 2, "num_workers": 0}  # fmt: skip
    return {"class_path": "vtk.data.MaskFolderDataModule", "init_args": {**args, **extra}}


def _same_items(a, b, split: str) -> None:
    assert len(a.datasets[split]) == len(b.datasets[split])
    for i in range(len(a.datasets[split])):
        x, y = a.datasets[split][i], b.datasets[split][i]
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key], y[key]), (split, i, key)
            elif isinstance(x[key], dict):
                for k in x[key]:
                    assert torch.equal(torch.as_tensor(x[key][k]), torch.as_tensor(y[key][k]))
            else:
                assert x[key] == y[key], (split, i, key)


def _validate(task, datamodule, tmp_path: Path) -> dict[str, float]:
    torch.manual_seed(0)
    return quiet_trainer(tmp_path / "runs").validate(task, datamodule=datamodule, verbose=False)[0]


def test_a_mask_folder_streams_as_its_files_and_trains(tmp_path, make_pair, run_vtk) -> None:
    root = _mask_folder(tmp_path / "set", make_pair)
    recipe = _recipe(tmp_path, "demo_segmentation", _seg_data(root))
    code = run_vtk("optimize", recipe, "--out", tmp_path / "stream", "--workers", 2)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == ["train", "val"]  # no test

    files = MaskFolderDataModule(**_seg_data(root)["init_args"])
    streamed = MaskFolderDataModule(**_seg_data(root, stream=str(tmp_path / "stream"))["init_args"])
    for dm in (files, streamed):
        dm.setup("fit")
    assert all(isinstance(s.image, StoredFile) for s in streamed.datasets["train"].samples)
    index = json.loads((tmp_path / "stream" / "train" / "index.json").read_text())
    by_chunk = [k for k, c in enumerate(index["chunks"]) for _ in range(c["chunk_size"])]
    assert streamed.train_dataloader().sampler.chunks.tolist() == by_chunk  # read by chunk
    assert files.train_dataloader().sampler.chunks is None
    _same_items(files, streamed, "val")  # the same image, mask, id and path, item for item
    # the training split: the same pairs (through the evaluation pipeline: the training one
    # draws from albumentations' own generator)
    for dm in (files, streamed):
        dm.datasets["train"].transform = files.eval_transform()
    _same_items(files, streamed, "train")

    # it trains from the chunks (loader workers read the stream in their own processes), and
    # the trained network scores the streamed validation split as it scores the files
    task = Recipe.load(recipe).task(3)
    streamed.num_workers = 2
    quiet_trainer(tmp_path / "runs", max_steps=3, limit_val_batches=0).fit(
        task, datamodule=streamed
    )
    streamed.num_workers = 0
    by_files, by_stream = _validate(task, files, tmp_path), _validate(task, streamed, tmp_path)
    assert "val/mIoU" in by_files
    np.testing.assert_equal(by_files, by_stream)  # every metric, exactly (NaN for absent classes)


def _coco(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(1, 9):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(
            root / "images" / f"im{i}.jpg"
        )
        images.append({"id": i, "file_name": f"im{i}.jpg", "width": 80, "height": 64})
        annotations.append({"id": i, "image_id": i, "category_id": 3 + i % 2,
                            "bbox": [4 * i, 5, 20, 18], "area": 360, "iscrowd": 0})  # fmt: skip
    for split, ids in (("train", range(1, 7)), ("val", range(7, 9))):
        (root / f"{split}.json").write_text(json.dumps({
            "images": [im for im in images if im["id"] in ids],
            "annotations": [a for a in annotations if a["image_id"] in ids],
            "categories": [{"id": 3, "name": "cell"}, {"id": 4, "name": "platelet"}],
        }))  # fmt: skip
    return root


def _coco_data(root: Path) -> dict:
    args = {"train_images": str(root / "images"), "train_annotations": str(root / "train.json"),
            "val_annotations": str(root / "val.json"), "batch_size": 2, "num_workers": 0,
            "aspect_ratio_groups": 1}  # fmt: skip
    return {"class_path": "vtk.data.CocoDetectionDataModule", "init_args": args}


def _classification_sets(root: Path) -> None:
    """An image folder (3 classes) and the same images as multi-label CSVs."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rows: dict[str, list[str]] = {"train": [], "val": []}
    for split, n in (("train", 9), ("val", 4)):
        for i in range(n):
            name = "abc"[i % 3]
            folder = root / "folders" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (30, 34, 3), dtype=np.uint8)).save(
                folder / f"{split}{i}.jpg"
            )
            labels = ";".join(sorted({name, "abc"[(i + 1) % 3]}))
            rows[split].append(f"{name}/{split}{i}.jpg,{labels}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("image,labels\n" + "\n".join(lines) + "\n")


@pytest.mark.slow  # LitData's writer processes, for two sets
def test_classification_and_multilabel_data_stream_as_their_files(tmp_path) -> None:
    _classification_sets(tmp_path)
    common = {"image_size": 24, "resize_size": 28, "batch_size": 3, "num_workers": 0}
    folder = {"class_path": "vtk.data.ImageFolderDataModule",
              "init_args": {"root": str(tmp_path / "folders"), **common}}  # fmt: skip
    labels = {"class_path": "vtk.data.MultiLabelDataModule", "init_args": {
        "train_labels": str(tmp_path / "train.csv"), "val_labels": str(tmp_path / "val.csv"),
        "train_images": str(tmp_path / "folders" / "train"),
        "val_images": str(tmp_path / "folders" / "val"), **common}}  # fmt: skip
    for name, data, cls in (("folders", folder, ImageFolderDataModule),
                            ("labels", labels, MultiLabelDataModule)):  # fmt: skip
        base = "demo_classification" if name == "folders" else "demo_multilabel"
        recipe = _recipe(tmp_path, base, data)
        assert optimize(str(recipe), tmp_path / f"{name}_stream", workers=1) == {
            "train": 9,
            "val": 4,
        }
        files = cls(**data["init_args"])
        # the stream alone: the classes come from it, no folder or label file is read
        gone = {k: str(tmp_path / "gone") if isinstance(v, str) else v
                for k, v in data["init_args"].items()}  # fmt: skip
        streamed = cls(**gone, stream=str(tmp_path / f"{name}_stream"))
        assert streamed.class_names == files.class_names == ["a", "b", "c"]
        for dm in (files, streamed):
            dm.setup("fit")
            dm.datasets["train"].transform = files.eval_transform()
        _same_items(files, streamed, "val")
        _same_items(files, streamed, "train")


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free loopback port: its URL (credentials in the environment)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        pytest.skip("moto's server is not installed (pip install 'moto[server]')")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow  # an S3 server process
def test_a_coco_set_streams_from_a_folder_and_from_s3(
    tmp_path, s3_server, monkeypatch, capsys
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    root = _coco(tmp_path / "coco")
    recipe = _recipe(tmp_path, "demo_detection", _coco_data(root))
    written = optimize(str(recipe), tmp_path / "stream", workers=1)
    assert written == {"train": 6, "val": 2}
    # the same recipe written straight into the bucket, by the command as a user gives it
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="data")
    into_s3 = [str(recipe), "--out", "s3://data/coco", "--workers", "1",
               "--storage_options", f"{{endpoint_url: {s3_server}}}"]  # fmt: skip
    stream_main(into_s3)
    said = capsys.readouterr().out
    assert "train: 6 samples -> s3://data/coco/train" in said
    assert '--data.stream s3://data/coco --data.stream_options \'{"endpoint_url"' in said
    with pytest.raises(SystemExit, match="s3://data/coco already holds objects"):
        stream_main(into_s3)  # nothing is overwritten

    args = _coco_data(root)["init_args"]
    files = CocoDetectionDataModule(**args)
    # the stream alone: no annotation file or image folder is read (the paths are gone)
    gone = {**args, "train_images": "gone/", "train_annotations": "gone.json",
            "val_annotations": "gone.json"}  # fmt: skip
    local = CocoDetectionDataModule(**gone, stream=str(tmp_path / "stream"))
    remote = CocoDetectionDataModule(
        **gone, stream="s3://data/coco", stream_options={"endpoint_url": s3_server},
        stream_cache=str(tmp_path / "cache"),
    )  # fmt: skip
    assert local.class_names == remote.class_names == ["cell", "platelet"]
    assert local.category_ids == remote.category_ids == [3, 4]
    for dm in (files, local, remote):
        dm.setup("fit")
    _same_items(files, local, "val")
    _same_items(files, remote, "val")
    # the training sampler's options read the streamed records (aspect-ratio groups)
    assert remote.train_dataloader().sampler.groups.tolist() == (
        files.train_dataloader().sampler.groups.tolist()
    )
    task = Recipe.load(recipe).task(2)
    task.category_ids = files.category_ids
    quiet_trainer(tmp_path / "runs", max_steps=2, limit_val_batches=0).fit(task, datamodule=remote)
    scores = [_validate(task, dm, tmp_path) for dm in (files, local, remote)]
    assert "val/AP" in scores[0]
    np.testing.assert_equal(scores[0], scores[1])
    np.testing.assert_equal(scores[0], scores[2])


def test_what_a_stream_refuses(tmp_path, make_pair) -> None:
    root = _mask_folder(tmp_path / "set", make_pair)
    recipe = _recipe(tmp_path, "demo_segmentation", _seg_data(root))
    before = multiprocessing.get_start_method(allow_none=True)
    optimize(str(recipe), tmp_path / "stream", workers=1)
    # LitData sets the process's start method (to spawn): vtk puts the caller's back
    assert multiprocessing.get_start_method(allow_none=True) == before
    init = _seg_data(root)["init_args"]

    with pytest.raises(DataError, match="exists and is not empty"):  # nothing is overwritten
        optimize(str(recipe), tmp_path / "stream", workers=1)
    # an object store other than S3, and an S3 address without a prefix, before any work
    with pytest.raises(DataError, match=r"writes to a folder or to s3://bucket/prefix.*gs://"):
        optimize(str(recipe), "gs://bucket/stream")
    with pytest.raises(DataError, match="give a bucket and a prefix"):
        optimize(str(recipe), "s3://bucket")
    with pytest.raises(SystemExit, match="2"):  # argparse's usage line, naming the option
        stream_main([str(recipe), "--out", "s3://b/p", "--storage_options", "[1]"])
    with pytest.raises(DataError, match=r"cannot open the stream .*nowhere"):
        MaskFolderDataModule(**init, stream=str(tmp_path / "nowhere")).setup("fit")
    wrong = {**init, "num_classes": 2, "class_names": ["background", "a"]}
    with pytest.raises(DataError, match="written with 3 classes"):
        MaskFolderDataModule(**wrong, stream=str(tmp_path / "stream")).setup("fit")
    # classes from the stream when the recipe gives none
    dm = MaskFolderDataModule(**{**init, "num_classes": None, "class_names": None},
                              stream=str(tmp_path / "stream"))  # fmt: skip
    assert dm.class_names == NAMES
    with pytest.raises(
        DataError, match=r"does not stream \(data.stream\): its images are not files"
    ):
        CIFAR10DataModule(stream=str(tmp_path / "stream"))  # arrays in memory

    # a LitData folder that vtk did not write (no vtk entry in its index)
    plain = tmp_path / "plain" / "train"
    shutil.copytree(tmp_path / "stream" / "train", plain)
    data = json.loads((plain / "index.json").read_text())
    del data["vtk"]
    (plain / "index.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="not one vtk optimize wrote"):
        read_split(str(tmp_path / "plain"), "train")
    # a copy that lost a chunk, and one whose index does not match its chunks
    shutil.copytree(tmp_path / "stream" / "val", tmp_path / "lost" / "val")
    next((tmp_path / "lost" / "val").glob("chunk-*.bin")).unlink()
    with pytest.raises(DataError, match=r"lacks 1 of its chunks .*incomplete"):
        read_split(str(tmp_path / "lost"), "val")
    index = tmp_path / "stream" / "val" / "index.json"
    data = json.loads(index.read_text())
    data["vtk"]["items"] += 1
    index.write_text(json.dumps(data))
    with pytest.raises(DataError, match="holds 3 items but its index says 4"):
        read_split(str(tmp_path / "stream"), "val")


@pytest.mark.slow
def test_the_documented_commands_train_from_a_stream_under_ddp(vtk_process) -> None:
    """docs/distributed.md's three commands (short: a few steps), the last under 2-process DDP:
    each rank (and loader worker) opens the stream itself."""
    quick = ("--trainer.max_steps", 2, "--trainer.limit_val_batches", 2, "--data.num_workers", 1,
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")  # fmt: skip
    written = vtk_process("optimize", "demo_segmentation", "--out", "stream/", "--workers", 2)
    assert written.returncode == 0, written.stderr[-2000:]
    assert "train: 400 samples" in written.stdout
    one = vtk_process("fit", "demo_segmentation", "--data.stream", "stream/", *quick)
    assert one.returncode == 0, one.stderr[-2000:]
    ddp = vtk_process("fit", "demo_segmentation", "--data.stream", "stream/", "--trainer.accelerator",
                      "cpu", "--trainer.devices", 2, "--trainer.strategy", "ddp", *quick)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    for run in (one, ddp):
        assert "the train split: 400 samples from the stream stream/" in run.stderr
        assert "the val split: 51 samples from the stream stream/" in run.stderr


def test_a_failed_upload_is_one_line(tmp_path) -> None:
    """An upload the store refuses (boto3's S3UploadFailedError) names the address and what to
    do, instead of a traceback from inside boto3."""
    from boto3.exceptions import S3UploadFailedError

    from vtk.data.stream import _upload_split

    class Refusing:
        def upload_file(self, *args: object) -> None:
            raise S3UploadFailedError("Access Denied")

    (tmp_path / "chunk-0-0.bin").write_bytes(b"x")
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(DataError, match=r"uploading to s3://data/coco/train failed \(Access"):
        _upload_split(tmp_path, Refusing(), "data", "coco/train")
