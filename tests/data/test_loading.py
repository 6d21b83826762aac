"""Samplers: every evaluation sample scored once under DDP; a resumed run sees the same data."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DistributedSampler

from vtk.data import DemoClassificationDataModule
from vtk.data.loading import EvalSampler, TrainSampler
from vtk.models import Classifier, ResNet
from vtk.tasks import ClassificationTask


def test_eval_shards_cover_an_odd_set_exactly_once() -> None:
    data = list(range(251))
    shards = [list(EvalSampler(data, 2, rank)) for rank in range(2)]
    assert [len(s) for s in shards] == [126, 125]
    assert sorted(shards[0] + shards[1]) == data
    assert [len(EvalSampler(data, 2, r)) for r in range(2)] == [126, 125]
    padded = [list(DistributedSampler(data, 2, r, shuffle=False)) for r in range(2)]
    assert len(padded[0] + padded[1]) == 252  # what Lightning's default would score


def test_train_shards_resume_after_the_trained_batches_of_that_epoch_only() -> None:
    data = list(range(40))
    full = TrainSampler(data, 2, 1, seed=3)
    full.set_epoch(5)
    order = list(full)
    resumed = TrainSampler(data, 2, 1, seed=3)
    resumed.resume_at(epoch=5, batches=2, batch_size=4)
    resumed.set_epoch(5)
    assert list(resumed) == order[8:]
    resumed.set_epoch(6)
    full.set_epoch(6)
    assert list(resumed) == list(full)  # the next epoch is whole again
    other = TrainSampler(data, 2, 0, seed=3)
    other.set_epoch(5)
    assert not set(other) & set(order)  # ranks hold disjoint shards


class Record(Callback):
    """The sample ids and LR of every training step."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[list[str], float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps[trainer.global_step] = (list(batch["id"]), lr)


def _fit(tmp_path, max_steps: int, ckpt_path=None) -> Record:
    record = Record()
    demo = DemoClassificationDataModule(image_size=32, batch_size=8, num_workers=0)
    task = ClassificationTask(
        Classifier(ResNet("resnet18"), demo.num_classes),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    )
    checkpoints = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=5, save_top_k=-1)
    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=max_steps, limit_train_batches=30,
        limit_val_batches=0, callbacks=[record, checkpoints],
    )  # fmt: skip
    trainer.fit(task, datamodule=demo, ckpt_path=ckpt_path)
    return record


def test_a_run_resumed_mid_epoch_sees_the_same_data_and_lr(tmp_path) -> None:
    whole = _fit(tmp_path / "a", max_steps=8)
    resumed = _fit(tmp_path / "b", max_steps=8, ckpt_path=tmp_path / "a" / "step=5.ckpt")
    assert sorted(resumed.steps) == [5, 6, 7]  # continues at the checkpoint's global step
    for step in (5, 6, 7):
        assert resumed.steps[step] == whole.steps[step], step  # same samples, same LR


def _grouped(rank: int, epoch: int = 0, world: int = 2) -> TrainSampler:
    groups = [0] * 12 + [1] * 8  # e.g. 12 landscape and 8 portrait images
    sampler = TrainSampler(list(range(20)), world, rank, seed=3, groups=groups, batch_size=4)
    sampler.set_epoch(epoch)
    return sampler


def test_grouped_batches_hold_one_group_and_shard_without_repeats() -> None:
    seen = []
    for rank in (0, 1):
        order = list(_grouped(rank))
        assert len(order) == len(_grouped(rank)) == 8  # 20 // (4 x 2) = 2 batches per rank
        for k in range(0, len(order), 4):
            assert len({i >= 12 for i in order[k : k + 4]}) == 1, order  # one group per batch
        seen += order
    assert len(set(seen)) == len(seen)  # no image twice in the epoch
    assert list(_grouped(0)) == list(_grouped(0))  # seeded: every rank, and a resumed run, agree
    assert list(_grouped(0, epoch=1)) != list(_grouped(0))
    resumed = _grouped(1)
    resumed.resume_at(epoch=0, batches=1, batch_size=4)
    assert list(resumed) == list(_grouped(1))[4:]


def _chunked(rank: int, epoch: int = 0, ranks: int = 2) -> TrainSampler:
    chunks = [i // 10 for i in range(80)]  # 8 chunks of 10 samples
    sampler = TrainSampler(list(range(80)), ranks, rank, seed=3, batch_size=4, chunks=chunks,
                           window_chunks=2)  # fmt: skip
    sampler.set_epoch(epoch)
    return sampler


def test_a_streamed_split_is_read_chunk_by_chunk_each_sample_once() -> None:
    orders = [list(_chunked(rank)) for rank in (0, 1)]
    assert sorted(orders[0] + orders[1]) == list(range(80))  # every sample once in the epoch
    for order in orders:
        assert len({i // 10 for i in order}) == 4  # each rank reads half of the 8 chunks
        for start in range(0, 40, 20):  # and a window of 2 chunks at a time
            assert len({i // 10 for i in order[start : start + 20]}) <= 3
    assert set(i // 10 for i in orders[0]).isdisjoint(i // 10 for i in orders[1])
    assert orders[0] != sorted(orders[0])  # shuffled inside its windows
    assert list(_chunked(0)) == orders[0]  # seeded: a resumed run draws the same
    assert list(_chunked(0, epoch=1)) != orders[0]  # a new order each epoch
    resumed = _chunked(1)
    resumed.resume_at(epoch=0, batches=3, batch_size=4)
    assert list(resumed) == orders[1][12:]
    three = [list(_chunked(rank, ranks=3)) for rank in range(3)]  # 80 on 3 ranks: 27 each
    assert [len(o) for o in three] == [27, 27, 27]
    assert set().union(*three) == set(range(80))  # one sample wraps around to fill the last


def test_grouped_batches_of_a_stream_are_read_chunk_by_chunk() -> None:
    """Aspect-ratio groups on a stream: every batch holds one group, and each rank's batches
    come from its own share of the chunks (not from every chunk)."""
    chunks = [i // 10 for i in range(80)]  # 8 chunks of 10
    groups = [(i // 5) % 2 for i in range(80)]  # two groups, mixed inside every chunk

    def sampler(rank: int, epoch: int = 0) -> TrainSampler:
        s = TrainSampler(list(range(80)), 2, rank, seed=5, batch_size=4, groups=groups,
                         chunks=chunks, window_chunks=2)  # fmt: skip
        s.set_epoch(epoch)
        return s

    orders = [list(sampler(rank)) for rank in (0, 1)]
    for order in orders:
        assert len(order) == 40 and len(set(order)) == 40
        for k in range(0, 40, 4):
            assert len({groups[i] for i in order[k : k + 4]}) == 1  # one group per batch
    assert len(set(orders[0]) | set(orders[1])) >= 72  # (a group's tail waits for the next epoch)
    for order in orders:  # about half of the 8 chunks each (a boundary chunk may be shared)
        assert len({chunks[i] for i in order}) <= 5
    assert list(sampler(0)) == orders[0] and list(sampler(0, epoch=1)) != orders[0]
    resumed = sampler(1)
    resumed.resume_at(epoch=0, batches=2, batch_size=4)
    assert list(resumed) == orders[1][8:]


def test_repeat_factor_sampling_repeats_rare_images_as_often_as_their_factor() -> None:
    factors = [1.0] * 18 + [2.5, 2.5]
    counts = []
    for epoch in range(200):
        sampler = TrainSampler(list(range(20)), 1, 0, seed=0, repeat_factors=factors)
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 23  # round(18 + 2 x 2.5)
        counts.append([order.count(i) for i in (0, 18)])
    counts = torch.tensor(counts, dtype=torch.float64)
    assert set(counts[:, 1].tolist()) <= {1.0, 2.0, 3.0}  # wrapped or cut epochs can lose one
    assert abs(counts[:, 1].mean().item() - 2.5) < 0.15
    assert abs(counts[:, 0].mean().item() - 1.0) < 0.1


def test_loader_workers_are_capped_at_the_available_cores(monkeypatch) -> None:
    """Recipes ask for 4 workers; on a 2-core machine more than 2 only compete with training."""
    from vtk.data import loading

    monkeypatch.setattr(loading, "available_cores", lambda: 2)
    demo = DemoClassificationDataModule(image_size=32, batch_size=8, num_workers=4)
    demo.setup("fit")
    assert demo.train_dataloader().num_workers == 2
    demo = DemoClassificationDataModule(image_size=32, batch_size=8, num_workers=1)
    demo.setup("fit")
    assert demo.train_dataloader().num_workers == 1


class _Noise(torch.utils.data.Dataset):
    """Each item is one draw of an albumentations transform's own generator."""

    def __init__(self) -> None:
        import albumentations as A
        import numpy as np

        class Draw(A.ImageOnlyTransform):
            def apply(self, img, **params):
                return np.full_like(img, self.py_random.random())

        self.transform = A.Compose([Draw(p=1.0)])

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> float:
        import numpy as np

        return float(self.transform(image=np.zeros((2, 2, 3), np.float32))["image"][0, 0, 0])


def _draws(num_workers: int, seed: int) -> list[float]:
    from vtk.data.loading import make_loader

    torch.manual_seed(seed)
    loader = make_loader(None, _Noise(), 1, True, num_workers, lambda b: b[0], persistent=False)
    return list(loader)


def test_augmentations_follow_the_seed_and_differ_between_workers() -> None:
    """albumentations' own generators: seeded from torch's (seed_everything), per worker. Before,
    two workers drew the same sequence and a seeded run drew new augmentations each time."""
    for workers in (0, 2):
        first = _draws(workers, seed=0)
        assert first == _draws(workers, seed=0)  # the seed decides
        assert first != _draws(workers, seed=1)
        assert len(set(first)) == len(first)  # no two items (no two workers) drew alike
