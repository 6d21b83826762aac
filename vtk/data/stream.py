"""Streaming datasets: any vtk dataset written once into LitData chunks, then read from a folder
or an object store by every rank of a run, through the same DataModule, augmentation and
samplers as the files themselves.

    vtk optimize recipes/camvid.yaml --out /shared/camvid-stream          # write the chunks
    vtk optimize recipes/camvid.yaml --out s3://bucket/camvid-stream      # or into S3
    vtk fit recipes/camvid.yaml --data.stream s3://bucket/camvid-stream    # train from them

What a chunk holds: each sample's files as they are on disk (the encoded JPEG or PNG bytes of
its image, mask and region of interest: nothing is decoded or re-encoded), packed in LitData's
format (``litdata.optimize``). What the dataset knows about each sample (its id, class, boxes,
sizes, ...) and the data's classes go once per split into LitData's ``index.json``, under
``"vtk"``. At training time a sample's file paths are :class:`StoredFile` references, which
:func:`vtk.data.io.open_image` reads from the stream (``litdata.StreamingDataset``: its local
or S3 storage, its chunk cache), so every check and message of the file-based datasets
applies unchanged.

Order and exactness come from vtk, not from LitData's iterable loader: the streamed split is a
map-style dataset, so training uses vtk's seeded, resumable :class:`~vtk.data.loading.TrainSampler`
(a run killed mid-epoch resumes after the batches it trained on; repeat factors work as on
files) and evaluation vtk's :class:`~vtk.data.loading.EvalSampler` (every image scored once
over the ranks). The training order reads chunk by chunk (the ``chunks`` option of the sampler:
chunks in a seeded random order, each rank a contiguous share shuffled within windows of a few
chunks; with aspect-ratio groups, its batches), so a rank fetches about 1/world_size of the
chunks per epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np

from vtk.errors import DataError

log = logging.getLogger("vtk")

#: the key of ``index.json`` that holds what vtk knows about the split
META_KEY = "vtk"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


def _litdata() -> Any:
    try:
        import litdata
    except ImportError:
        raise DataError(
            "streaming needs LitData: pip install 'vtk[stream]' (or pip install litdata)."
        ) from None
    return litdata


# -- where a sample's files are -----------------------------------------------------------------
@dataclass(frozen=True)
class StreamSplit:
    """One split of a stream: its address (a folder, or ``s3://bucket/prefix/split``), the
    local chunk cache and LitData's storage options (e.g. ``{"endpoint_url": ...}``) as JSON."""

    url: str
    cache_dir: str | None = None
    storage_options: str = "{}"


@dataclass(frozen=True)
class StoredFile:
    """A file of a streamed sample: its original path (for ids, names and messages) and where
    its bytes are in the stream. Not a path: code that would open the original file fails
    instead of reading a stale copy; :func:`vtk.data.io.open_image` reads it with
    :meth:`read_stored`."""

    path: str
    source: StreamSplit = field(compare=True)
    index: int = 0
    offset: int = 0
    length: int = 0

    def __str__(self) -> str:
        return self.path

    def __fspath__(self) -> str:  # pragma: no cover - guarded: a stored file has no path here
        raise DataError(
            f"{self.path} is a file inside the stream {self.source.url}; it is read with "
            "vtk.data.io.open_image, not opened as a path."
        )

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    def read_stored(self) -> bytes:
        """The file's bytes, from the stream (its chunk is fetched and cached as needed)."""
        return _item_blob(self.source, self.index)[self.offset : self.offset + self.length]


#: per process: the open ``StreamingDataset`` of each split, and the last item read (a sample's
#: image, mask and region of interest are read one after the other)
_OPEN: dict[tuple[StreamSplit, int], Any] = {}
_LAST: dict[str, Any] = {}


def open_split(split: StreamSplit) -> Any:
    """The split's ``litdata.StreamingDataset`` in this process (opened once per process: a
    DataLoader worker opens its own)."""
    key = (split, os.getpid())
    if key not in _OPEN:
        litdata = _litdata()
        try:
            _OPEN[key] = litdata.StreamingDataset(
                split.url, cache_dir=split.cache_dir,
                storage_options=json.loads(split.storage_options),
            )  # fmt: skip
        except Exception as e:  # LitData raises many kinds: a missing index, a refused bucket
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(
                f"cannot open the stream {split.url}: {first}. Give the folder (or URL) that "
                "vtk optimize --out wrote, with --data.stream_options for its storage "
                "(e.g. {endpoint_url: ...})."
            ) from None
    return _OPEN[key]


def _item_blob(split: StreamSplit, index: int) -> bytes:
    if _LAST.get("key") != (split, index, os.getpid()):
        item = open_split(split)[index]
        _LAST.update(key=(split, index, os.getpid()), blob=bytes(item["blob"]))
    return _LAST["blob"]


# -- samples as JSON ----------------------------------------------------------------------------
def _encode(value: Any, files: list[tuple[str, int]]) -> Any:
    """A sample's value as JSON; each file it names is appended to ``files`` (path, size) and
    replaced by its place in the sample's blob."""
    if isinstance(value, PurePath):
        offset = sum(size for _, size in files)
        try:
            size = os.path.getsize(value)
        except OSError:
            raise DataError(
                f"{value} does not exist (it is a file of a sample to write)."
            ) from None
        files.append((str(value), size))
        return {"file": str(value), "offset": offset, "length": size}
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, files) for v in value]}
    if isinstance(value, list):
        return [_encode(v, files) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    raise DataError(f"cannot write a sample value of type {type(value).__name__} to a stream.")


def _decode(value: Any, split: StreamSplit, index: int) -> Any:
    if isinstance(value, list):
        return [_decode(v, split, index) for v in value]
    if not isinstance(value, dict):
        return value
    if "file" in value:
        return StoredFile(value["file"], split, index, value["offset"], value["length"])
    if "array" in value:
        return np.asarray(value["array"], dtype=value["dtype"]).reshape(value["shape"])
    if "tuple" in value:
        return tuple(_decode(v, split, index) for v in value["tuple"])
    raise DataError(f"the stream {split.url} holds a sample value vtk cannot read: {value!r:.80}")


def encode_sample(sample: Any) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """A sample (a dataclass of vtk's data modules) as JSON, and the files it names."""
    if not dataclasses.is_dataclass(sample) or isinstance(sample, type):
        raise DataError(f"cannot write a sample of type {type(sample).__name__} to a stream.")
    files: list[tuple[str, int]] = []
    cls = type(sample)
    fields = {f.name: _encode(getattr(sample, f.name), files) for f in dataclasses.fields(sample)}
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "fields": fields}, files


def decode_sample(entry: dict[str, Any], split: StreamSplit) -> Any:
    """The sample of :func:`encode_sample`, its files :class:`StoredFile` references."""
    module, _, name = entry["type"].rpartition(".")
    if not module.startswith("vtk."):  # only vtk's own sample classes are built from a stream
        raise DataError(f"the stream {split.url} names a sample type outside vtk: {entry['type']}")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise DataError(f"the stream {split.url} names an unknown sample type {entry['type']}.")
    index = entry["position"]
    return cls(**{k: _decode(v, split, index) for k, v in entry["fields"].items()})


# -- reading a split ----------------------------------------------------------------------------
def split_address(stream: str, split: str) -> str:
    return f"{stream.rstrip('/')}/{split}"


def read_split(
    stream: str,
    split: str,
    cache_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """The samples of one split of a stream (files as :class:`StoredFile`) and what the stream
    says about the data (``num_classes``, ``class_names``, ``category_ids``, ``data``)."""
    source = StreamSplit(
        split_address(stream, split), cache_dir, json.dumps(storage_options or {}, sort_keys=True)
    )
    dataset = open_split(source)
    index_file = Path(dataset.input_dir.path or source.url) / "index.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    meta = index.get(META_KEY)
    # the items of the whole split (len() of a StreamingDataset is this rank's share under DDP;
    # an index reaches every item from every rank)
    items = sum(int(chunk.get("chunk_size") or 0) for chunk in index.get("chunks", []))
    if not meta:
        raise DataError(
            f"{source.url} is a LitData dataset but not one vtk optimize wrote (its index.json "
            "has no vtk entry): write it with vtk optimize RECIPE --out DIR."
        )
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{source.url} was written by another vtk stream format ({meta.get('version')}); "
            f"this vtk reads version {FORMAT_VERSION}: write it again with vtk optimize."
        )
    if "://" not in source.url:  # a folder: every chunk its index lists is there
        missing = [c["filename"] for c in index.get("chunks", [])
                   if not (Path(source.url) / c["filename"]).is_file()]  # fmt: skip
        if missing:
            raise DataError(
                f"{source.url} lacks {len(missing)} of its chunks ({missing[0]}, ...): the "
                "folder is incomplete (an interrupted copy?). Copy it again."
            )
    if items != meta["items"]:
        raise DataError(
            f"{source.url} holds {items} items but its index says {meta['items']}: the "
            "folder is incomplete (an interrupted copy?). Copy it again."
        )
    samples = [decode_sample(entry, source) for entry in meta["samples"]]
    # the storage chunk of each sample (for a training order that reads chunk by chunk)
    ends = np.cumsum([int(c.get("chunk_size") or 0) for c in index.get("chunks", [])])
    positions = [entry["position"] for entry in meta["samples"]]
    meta = {**meta, "chunks": np.searchsorted(ends, positions, side="right")}
    return samples, meta


def stream_facts(
    stream: str, cache_dir: str | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a stream's training split says about the data: ``num_classes``, ``class_names``,
    ``category_ids`` (for DataModules that otherwise read them from annotation files)."""
    _, meta = read_split(stream, "train", cache_dir, storage_options)
    return {k: meta[k] for k in ("num_classes", "class_names", "category_ids")}


# -- writing ------------------------------------------------------------------------------------
def _pack(entry: tuple[int, list[str], list[int]]) -> dict[str, Any]:
    """One sample's files, read as they are and joined (a LitData ``optimize`` function)."""
    position, paths, sizes = entry
    parts = []
    for path, size in zip(paths, sizes, strict=True):
        data = Path(path).read_bytes()
        if len(data) != size:
            raise DataError(f"{path} changed while the stream was written; write it again.")
        parts.append(data)
    return {"position": position, "blob": b"".join(parts)}


def write_split(
    samples: Sequence[Any],
    out: Path,
    facts: dict[str, Any],
    workers: int = 1,
    chunk_bytes: str = "64MB",
) -> int:
    """Write one split's samples as LitData chunks under ``out`` (their files' bytes) and what
    vtk knows about them into its ``index.json``; the number of files' sets written.

    A sample listed more than once (a repeated training set) is stored once."""
    litdata = _litdata()
    entries, inputs, where = [], [], {}
    for sample in samples:
        entry, files = encode_sample(sample)
        key = tuple(path for path, _ in files)
        if key not in where:
            where[key] = len(inputs)
            inputs.append((len(inputs), [p for p, _ in files], [s for _, s in files]))
        entries.append({"position": where[key], **entry})
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty: remove it or give another --out.")
    # LitData sets the process's multiprocessing start method (force=True) and leaves it: put
    # back the caller's, or every later DataLoader of the process would spawn its workers
    before = multiprocessing.get_start_method(allow_none=True)
    try:
        litdata.optimize(
            fn=_pack, inputs=inputs, output_dir=str(out), chunk_bytes=chunk_bytes,
            num_workers=max(1, min(workers, len(inputs))), keep_data_ordered=True, mode=None,
            start_method="spawn", verbose=True,
        )  # fmt: skip
    finally:
        multiprocessing.set_start_method(before, force=True)
    index_file = out / "index.json"
    index = json.loads(index_file.read_text())
    index[META_KEY] = {"version": FORMAT_VERSION, "items": len(inputs), **facts,
                       "samples": entries}  # fmt: skip
    index_file.write_text(json.dumps(index))
    check = litdata.StreamingDataset(str(out))
    ends = (0, len(inputs) - 1)
    if len(check) != len(inputs) or any(check[i]["position"] != i for i in ends):
        raise DataError(f"LitData wrote {out} out of order; vtk cannot index it.")
    return len(inputs)


# -- writing into S3 -----------------------------------------------------------------------------
def _s3_target(url: str, storage_options: dict[str, Any]) -> tuple[Any, str, str]:
    """An S3 client (boto3, which LitData brings, with ``storage_options`` as its arguments:
    ``endpoint_url`` for MinIO or another S3-compatible store), the bucket and the key prefix
    of ``s3://bucket/prefix``; refused when the prefix already holds objects."""
    scheme, _, rest = url.partition("://")
    if scheme != "s3":
        raise DataError(
            f"--out {url}: vtk optimize writes to a folder or to s3://bucket/prefix (an S3 "
            f"or S3-compatible store); for {scheme}:// write a folder and copy it with the "
            "store's tool. vtk fit --data.stream reads what LitData reads (s3, gs, azure)."
        )
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise DataError(f"--out {url}: give a bucket and a prefix, s3://bucket/prefix.")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", **storage_options)
    try:
        taken = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/", MaxKeys=1)
    except (BotoCoreError, ClientError) as e:
        raise DataError(f"cannot list {url} ({e}): check the bucket, the credentials "
                        "(AWS_ACCESS_KEY_ID, ...) and --storage_options.") from None  # fmt: skip
    if taken.get("KeyCount", 0):
        raise DataError(f"{url} already holds objects: remove them or give another --out.")
    return client, bucket, prefix


def _upload_split(folder: Path, client: Any, bucket: str, key: str) -> None:
    """Every file of one written split under ``key``, ``index.json`` last (a reader that finds
    the index finds its chunks), then checked by listing (every page of it)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    files = sorted(folder.iterdir(), key=lambda f: f.name == "index.json")
    try:
        for file in files:
            client.upload_file(str(file), bucket, f"{key}/{file.name}")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/")
        listed = [obj for page in pages for obj in page.get("Contents", [])]
    except (BotoCoreError, ClientError, S3UploadFailedError) as e:
        raise DataError(f"uploading to s3://{bucket}/{key} failed ({e}): remove what arrived "
                        "and write it again.") from None  # fmt: skip
    sizes = {obj["Key"].rsplit("/", 1)[-1]: obj["Size"] for obj in listed}
    if sizes != {f.name: f.stat().st_size for f in files}:
        raise DataError(f"s3://{bucket}/{key} does not hold what was uploaded: write it again.")


def optimize(
    recipe: str,
    out: str | Path,
    overrides: Sequence[str] = (),
    splits: Sequence[str] = SPLITS,
    workers: int = 1,
    chunk_bytes: str = "64MB",
    storage_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write the recipe's data (its DataModule, after the checks a fit makes) as a stream under
    ``out``: one LitData dataset per split (``out/train``, ``out/val``, ``out/test`` when the
    data has one). ``out`` is a folder or ``s3://bucket/prefix`` (each split is written in a
    temporary folder, then uploaded with boto3 and ``storage_options``, e.g.
    ``{"endpoint_url": ...}``). Returns the samples written per split."""
    from vtk.recipe import Recipe

    target = _s3_target(str(out), storage_options or {}) if "://" in str(out) else None
    datamodule = Recipe.load(recipe, list(overrides), weights=False).datamodule()
    if not getattr(datamodule, "streams", False):
        raise DataError(
            f"{type(datamodule).__name__} does not stream: its images are not files. vtk "
            "optimize writes the data read from image files: segmentation, detection, "
            "classification and multi-label."
        )
    if getattr(datamodule, "stream", None):
        raise DataError("the recipe already reads a stream (data.stream): give the files' recipe.")
    datamodule.setup("fit")  # the checks a fit makes: sizes, masks' values, disjoint splits
    wanted = [s for s in splits if s != "test"]
    if "test" in splits and datamodule.test_source() is not None:
        datamodule.setup("test")
        wanted.append("test")
    facts = {
        "data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "num_classes": datamodule.num_classes,
        "class_names": list(datamodule.class_names),
        "category_ids": datamodule.category_ids,
    }
    written = {}
    for split in wanted:
        samples = datamodule.datasets[split].samples
        address = split_address(str(out), split)
        log.info("writing the %s split (%d samples) to %s", split, len(samples), address)
        # into S3: each split staged in a temporary folder, then uploaded
        staging = tempfile.TemporaryDirectory(prefix="vtk-optimize-") if target else None
        with staging or contextlib.nullcontext(Path(out).expanduser()) as root:
            folder = Path(root) / split
            written[split] = write_split(samples, folder, {**facts, "split": split}, workers,
                                         chunk_bytes)  # fmt: skip
            if target:
                client, bucket, prefix = target
                _upload_split(folder, client, bucket, f"{prefix}/{split}")
    return written


def _options(text: str) -> dict[str, Any]:
    """``--storage_options`` as the recipes write a mapping (YAML flow or JSON)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a mapping: '{{endpoint_url: URL}}'")
    return value


def main(argv: list[str] | None = None) -> None:
    """``vtk optimize RECIPE --out DIR_OR_S3 [--workers N] [--chunk_bytes 64MB]
    [--storage_options MAP] [--data.KEY V ...]``."""
    parser = argparse.ArgumentParser(
        prog="vtk optimize",
        description="Write a recipe's data as LitData chunks (one folder per split) that "
        "vtk fit/validate/test read with --data.stream DIR_OR_URL.",
    )
    parser.add_argument("recipe", help="a recipe's path or installed name (its data is written)")
    parser.add_argument(
        "--out", required=True, help="the folder to write (local or shared), or s3://bucket/prefix"
    )
    parser.add_argument(
        "--storage_options",
        type=_options,
        default={},
        help="the S3 client's options, e.g. '{endpoint_url: http://minio:9000}' "
        "(credentials from AWS_ACCESS_KEY_ID, ... as for boto3)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes reading the files (default: every core)")  # fmt: skip
    parser.add_argument("--chunk_bytes", default="64MB", help="chunk size (default 64MB)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args, overrides = parser.parse_known_args(argv)
    from vtk.errors import VTKError

    try:
        written = optimize(args.recipe, args.out, overrides, args.splits, args.workers,
                           args.chunk_bytes, args.storage_options)  # fmt: skip
    except VTKError as e:
        raise SystemExit(f"vtk: error: {e}") from None
    for split, n in written.items():
        print(f"{split}: {n} samples -> {split_address(str(args.out), split)}")
    options = ""
    if args.storage_options:
        options = f" --data.stream_options '{json.dumps(args.storage_options)}'"
    print(f"train from it: vtk fit {args.recipe} --data.stream {args.out}{options}")
