"""DataLoaders shared by every DataModule: exact evaluation shards and resumable training order.

Lightning's default under DDP is a ``DistributedSampler``, which pads every rank to the same
length by repeating samples: 251 validation images on 2 ranks are scored as 252, and the
metric is not the dataset's. vtk's loaders bring their own samplers (``DistributedSampler``
subclasses, so Lightning leaves them in place):

* :class:`EvalSampler` gives each rank ``indices[rank::world_size]`` with no padding, so every
  sample is scored exactly once (ranks may differ by one sample; metric states are summed or
  gathered, never averaged per rank).
* :class:`TrainSampler` is ``DistributedSampler``'s seeded per-epoch shuffle, and, when a run
  resumes from a mid-epoch checkpoint, skips the batches that the interrupted run already
  trained on in that epoch, so the resumed run sees the same data in the same order (the
  position travels in the checkpoint as the :class:`ResumableLoader`'s state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vtk._compat import batches_trained_this_epoch


class EvalSampler(DistributedSampler):
    """This rank's share of the dataset in order, without padding (each sample once overall)."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class TrainSampler(DistributedSampler):
    """``DistributedSampler`` (seeded shuffle per epoch, equal shards) that can resume mid-epoch.

    ``resume_at(epoch, batches, batch_size)`` makes the iteration of that epoch start after
    its first ``batches`` batches of this rank; other epochs are unaffected.

    Two options change what an epoch holds (both seeded by seed + epoch, so every rank draws the
    same epoch and a resumed run the same order):

    * ``repeat_factors`` (one float >= 1 per sample): repeat-factor sampling (Gupta et al.,
      LVIS, 2019 §3.2): sample i appears ``floor(r_i)`` times plus once more with probability
      ``r_i - floor(r_i)``; an epoch is ``round(sum(r))`` samples (wrapped or cut to that).
    * ``groups`` (one int per sample) with ``batch_size``: every batch of a rank holds samples
      of one group (torchvision's reference ``GroupedBatchSampler`` idea, here as the index order
      the DataLoader batches): each group's shuffled samples are cut into full batches, the
      batches shuffled and dealt to the ranks in turn. A group's last incomplete batch waits
      for the next epoch's shuffle; the epoch's batch count is fixed (the full batches the
      epoch's samples make), wrapped around when the groups leave fewer.
    * ``chunks`` (one int per sample: the storage chunk it is in, for a stream): the epoch's
      samples are ordered chunk by chunk (the chunks in a seeded random order, each chunk's
      samples shuffled), each rank takes a contiguous share of that order (with ``groups``: of
      the batches, each formed within its group in that order) and shuffles it within windows
      of about ``window_chunks`` chunks, so a rank reads about 1/world_size of the chunks per
      epoch instead of all of them (LitData's own loader orders its chunks this way).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        repeat_factors: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        batch_size: int = 1,
        chunks: np.ndarray | None = None,
        window_chunks: int = 4,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._resume: tuple[int, int] | None = None  # (epoch, samples to skip)
        n = len(dataset)  # type: ignore[arg-type]
        self.chunks = None if chunks is None else np.asarray(chunks, np.int64)
        if self.chunks is not None and len(self.chunks) != n:
            raise ValueError(f"{len(self.chunks)} chunk ids for {n} samples")
        self.window_chunks = window_chunks
        self.repeat_factors = None if repeat_factors is None else np.asarray(repeat_factors, float)
        self.groups = None if groups is None else np.asarray(groups)
        self.batch_size = batch_size
        if self.repeat_factors is not None and len(self.repeat_factors) != n:
            raise ValueError(f"{len(self.repeat_factors)} repeat factors for {n} samples")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"{len(self.groups)} groups for {n} samples")
        epoch_size = n if self.repeat_factors is None else max(1, round(self.repeat_factors.sum()))
        if self.groups is not None and epoch_size >= batch_size * num_replicas:
            self.batches_per_rank = epoch_size // (batch_size * num_replicas)
            self.num_samples = self.batches_per_rank * batch_size
        else:
            self.groups = None  # fewer samples than one batch per rank: nothing to group
            self.num_samples = math.ceil(epoch_size / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def _epoch_order(self) -> list[int]:
        """This rank's indices for this epoch, with the options above."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        n = len(self.dataset)  # type: ignore[arg-type]
        pool = np.arange(n)
        if self.repeat_factors is not None:
            r = self.repeat_factors
            whole = np.floor(r).astype(np.int64)
            extra = torch.rand(n, generator=g, dtype=torch.float64).numpy() < (r - whole)
            pool = np.repeat(pool, whole + extra)
        pool = pool[torch.randperm(len(pool), generator=g).numpy()]
        if self.groups is None and self.chunks is not None:
            return self._chunk_order(pool, g)
        if self.groups is None:
            return np.resize(pool, self.total_size)[self.rank :: self.num_replicas].tolist()
        if self.chunks is not None:
            pool = self._chunk_sorted(pool, g)
        size = self.batch_size
        slots = np.arange(len(pool))  # batches hold places in the pool
        batches = []
        for group in np.unique(self.groups[pool]):
            members = slots[self.groups[pool] == group]
            batches += [members[i : i + size] for i in range(0, len(members) - size + 1, size)]
        if not batches:  # no group fills a batch: mixed batches
            batches = [slots[i : i + size] for i in range(0, len(slots) - size + 1, size)]
        need = self.batches_per_rank * self.num_replicas
        if self.chunks is None:  # shuffled, dealt to the ranks in turn
            order = torch.randperm(len(batches), generator=g).tolist()
            dealt = [batches[order[k % len(order)]] for k in range(need)]
            mine = dealt[self.rank :: self.num_replicas]
        else:  # in the chunks' order, a contiguous share per rank, shuffled within windows
            batches.sort(key=lambda b: int(b[0]))
            dealt = [batches[k % len(batches)] for k in range(need)]
            mine = dealt[
                self.rank * self.batches_per_rank : (self.rank + 1) * self.batches_per_rank
            ]
            mine = self._windowed(mine, self._window(len(pool)) // size, g)
        return np.concatenate([pool[b] for b in mine]).tolist()

    def _chunk_sorted(self, pool: np.ndarray, g: torch.Generator) -> np.ndarray:
        """``pool`` (shuffled) ordered chunk by chunk, the chunks in a seeded random order."""
        assert self.chunks is not None
        ids = np.unique(self.chunks)
        place = np.empty(ids.max() + 1, np.int64)
        place[ids] = torch.randperm(len(ids), generator=g).numpy()  # the chunks' order
        return pool[np.argsort(place[self.chunks[pool]], kind="stable")]  # shuffled inside

    def _window(self, pool_size: int) -> int:
        """About ``window_chunks`` chunks' worth of samples."""
        chunks = len(np.unique(self.chunks))  # type: ignore[arg-type]
        return max(1, self.batch_size, round(self.window_chunks * pool_size / chunks))

    @staticmethod
    def _windowed(items: list[Any], window: int, g: torch.Generator) -> list[Any]:
        """``items`` shuffled within consecutive windows of ``window``."""
        out: list[Any] = []
        window = max(1, window)
        for start in range(0, len(items), window):
            part = items[start : start + window]
            out.extend(part[k] for k in torch.randperm(len(part), generator=g).tolist())
        return out

    def _chunk_order(self, pool: np.ndarray, g: torch.Generator) -> list[int]:
        """This rank's share of ``pool`` (shuffled) ordered chunk by chunk (see the class)."""
        pool = self._chunk_sorted(pool, g)
        share = np.resize(pool, self.total_size)
        share = share[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]
        return self._windowed(share.tolist(), self._window(len(pool)), g)

    def resume_at(self, epoch: int, batches: int, batch_size: int) -> None:
        self._resume = (epoch, batches * batch_size) if batches > 0 else None

    def __iter__(self) -> Iterator[int]:
        if self.repeat_factors is None and self.groups is None and self.chunks is None:
            indices = list(super().__iter__())
        else:
            indices = self._epoch_order()
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
            self._resume = None
            return iter(indices[skip:])
        return iter(indices)


class ResumableLoader(DataLoader):
    """A training DataLoader that Lightning saves and restores with the checkpoint.

    Its state (Lightning's ``state_dict`` / ``load_state_dict`` interface for loaders) is where
    the epoch stood: the epoch and how many of its batches were trained on. Restoring it makes
    the :class:`TrainSampler` skip those batches.
    """

    def __init__(
        self, *args: Any, position: Callable[[], tuple[int, int]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._position = position

    def state_dict(self) -> dict[str, Any]:
        if self._position is None:
            return {}
        epoch, batches = self._position()
        return {"epoch": epoch, "batches": batches, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if {"epoch", "batches", "batch_size"} <= set(state_dict) and isinstance(
            self.sampler, TrainSampler
        ):
            self.sampler.resume_at(
                state_dict["epoch"], state_dict["batches"], state_dict["batch_size"]
            )


def _placement(datamodule: LightningDataModule) -> tuple[int, int]:
    """(world size, global rank) of the trainer the DataModule is attached to, else (1, 0)."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank


def seed_augmentations(obj: Any, seed: int) -> int:
    """Seed every albumentations pipeline ``obj`` holds (a dataset's ``transform``, a vtk
    wrapper's pipelines, the datasets inside a ``Subset`` or ``ConcatDataset``), each with its
    own seed from ``seed``; the number seeded. Albumentations keeps its own random generators:
    neither ``seed_everything`` nor torch's per-worker seeding reaches them, so without this
    every run draws new augmentations whatever its seed, and the DataLoader's worker
    processes, forked with one generator state, draw the same sequence."""
    import albumentations as A

    found: list[Any] = []

    def walk(x: Any, depth: int) -> None:
        if isinstance(x, A.BaseCompose):
            found.append(x)
        elif isinstance(x, (list, tuple)) and len(x) <= 16:  # not a set's list of samples
            for item in x:
                walk(item, depth)
        elif depth < 4 and hasattr(x, "__dict__") and _walkable(x):
            for value in vars(x).values():
                walk(value, depth + 1)

    walk(obj, 0)
    for k, compose in enumerate(found):
        compose.set_random_seed((seed + 7919 * k) % 2**32)
    return len(found)


def _walkable(x: Any) -> bool:
    """vtk's own objects and torch's dataset wrappers (not models, arrays or files)."""
    return isinstance(x, Dataset) or type(x).__module__.split(".")[0] == "vtk"


def _draw_seed() -> int:
    """A seed drawn from torch's generator: fixed by ``seed_everything``, new otherwise."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def _augmentation_seed(seed: int, rank: int) -> int:
    return (seed + 1_000_003 * rank) % 2**32


def _seed_worker(rank: int, worker_id: int) -> None:
    """A DataLoader worker's start: its albumentations pipelines seeded from its torch seed
    (the loader's base seed + the worker id: new each epoch unless the workers persist), and
    Lightning's per-worker seeding of numpy and random when ``seed_everything(workers=True)``
    asked for it (a loader with a ``worker_init_fn`` does not get Lightning's own)."""
    info = torch.utils.data.get_worker_info()
    if info is not None:
        seed_augmentations(info.dataset, _augmentation_seed(torch.initial_seed(), rank))
    if os.environ.get("PL_SEED_WORKERS") == "1":
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def make_loader(
    datamodule: LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any],
    persistent: bool,
    sampler_options: dict[str, Any] | None = None,
) -> DataLoader:
    """A DataLoader for ``dataset`` with vtk's samplers (see the module docstring).

    ``num_workers`` is capped at the cores this process may use (more loader processes than
    cores only compete with training for them, and Lightning warns). Training drops the last
    incomplete batch (a batch of one breaks BatchNorm) when the shard
    holds at least one full batch. ``sampler_options`` go to the :class:`TrainSampler`
    (``repeat_factors``, ``groups``).
    """
    world_size, rank = _placement(datamodule)
    num_workers = min(num_workers, available_cores())  # more would only compete for them
    options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0 and persistent,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate_fn,
    )
    if not train:
        return DataLoader(dataset, sampler=EvalSampler(dataset, world_size, rank), **options)
    # albumentations draws from its own generators, which no global seed reaches: seeded here
    # from torch's (which seed_everything sets), per rank, and per worker in each worker
    options["worker_init_fn"] = partial(_seed_worker, rank)
    if num_workers == 0:
        seed_augmentations(dataset, _augmentation_seed(_draw_seed(), rank))
    sampler = TrainSampler(
        dataset, world_size, rank, int(os.environ.get("PL_GLOBAL_SEED", 0)),
        batch_size=batch_size, **(sampler_options or {}),
    )  # fmt: skip
    position = getattr(datamodule, "_train_position", None)  # a resumed run's checkpoint's
    if position is not None:
        sampler.resume_at(*position, batch_size=batch_size)
        datamodule._train_position = None
    trainer = getattr(datamodule, "trainer", None)
    return ResumableLoader(
        dataset,
        sampler=sampler,
        drop_last=len(sampler) >= batch_size,
        position=None if trainer is None else partial(batches_trained_this_epoch, trainer),
        **options,
    )
