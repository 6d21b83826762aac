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
  trained on in that epoch, so the resumed run sees the same data in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vtk.errors import DataError


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
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._resume: tuple[int, int] | None = None  # (epoch, samples to skip)

    def resume_at(self, epoch: int, batches: int, batch_size: int) -> None:
        self._resume = (epoch, batches * batch_size) if batches > 0 else None

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
            self._resume = None
            return iter(indices[skip:])
        return iter(indices)


class ResumableLoader(DataLoader):
    """A training DataLoader whose position Lightning treats as restorable.

    The position itself is not in this state: :func:`make_loader` reads it from the restored
    trainer's batch progress and hands it to the :class:`TrainSampler`. Having ``state_dict``
    tells Lightning so (it would otherwise warn that a mid-epoch resume is unreliable).
    """

    def state_dict(self) -> dict[str, Any]:
        return {"position": "restored from the trainer's batch progress by vtk.TrainSampler"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def _placement(datamodule: LightningDataModule) -> tuple[int, int]:
    """(world size, global rank) of the trainer the DataModule is attached to, else (1, 0)."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank


def make_loader(
    datamodule: LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any],
    persistent: bool,
) -> DataLoader:
    """A DataLoader for ``dataset`` with vtk's samplers (see the module docstring).

    Training drops the last incomplete batch (a batch of one breaks BatchNorm) when the shard
    holds at least one full batch.
    """
    world_size, rank = _placement(datamodule)
    sampler: DistributedSampler
    if train:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = TrainSampler(dataset, world_size, rank, seed)
        trainer = getattr(datamodule, "trainer", None)
        if trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            # on a resumed run: the batches of the interrupted epoch already trained on
            sampler.resume_at(trainer.current_epoch, progress.processed, batch_size)
    else:
        sampler = EvalSampler(dataset, world_size, rank)
    return (ResumableLoader if train else DataLoader)(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train and len(sampler) >= batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0 and persistent,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate_fn,
    )


class SplitLoaders:
    """The four DataLoaders of a vtk DataModule, from its ``datasets[split]`` (a mixin placed
    before ``LightningDataModule``). Subclasses set ``collate_fn`` and have ``batch_size``,
    ``val_batch_size`` and ``num_workers``; with ``full_train_batch`` a training split smaller
    than one batch is refused."""

    collate_fn: Callable[[list[Any]], Any]
    full_train_batch: bool = True
    datasets: dict[str, Dataset]
    batch_size: int
    val_batch_size: int
    num_workers: int

    def _loader(self, split: str, batch_size: int, train: bool = False) -> DataLoader:
        dataset = self.datasets[split]
        if train and self.full_train_batch and len(dataset) < batch_size:  # type: ignore[arg-type]
            raise DataError(
                f"the {split} split has {len(dataset)} images, fewer than batch_size={batch_size}."  # type: ignore[arg-type]
            )
        return make_loader(
            self,  # type: ignore[arg-type]
            dataset,
            batch_size,
            train,
            self.num_workers,
            type(self).collate_fn,
            persistent=split in ("train", "val"),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.val_batch_size)
