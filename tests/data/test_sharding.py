"""A torchrun job's share of each epoch: every world size trains on the same global batches."""

from __future__ import annotations

import pytest
import torch

from paramdoctor.config.schema import DataConfig
from paramdoctor.data import build_loaders
from paramdoctor.data.sharding import EpochShard, local_batch_size
from paramdoctor.errors import ConfigError

CPU = torch.device("cpu")


def _shards(cfg: DataConfig, world: int, seed: int = 3):
    return [build_loaders(cfg, seed=seed, device=CPU, rank=r, world_size=world) for r in range(world)]


def _union_of_step(batches_per_rank: list[list[tuple[torch.Tensor, torch.Tensor]]], step: int):
    """Rank r's step-k batch holds global positions r, r+N, ...: interleave them back into one batch."""
    xs = [batches[step][0] for batches in batches_per_rank]
    ys = [batches[step][1] for batches in batches_per_rank]
    x = torch.stack(xs, dim=1).reshape(-1, *xs[0].shape[1:])
    y = torch.stack(ys, dim=1).reshape(-1)
    return x, y


@pytest.mark.parametrize("world", [2, 3])
def test_each_step_over_all_ranks_is_the_single_process_batch_augmented_alike(world):
    cfg = DataConfig(dataset="digits", subset=300, batch_size=12 * world, augment=True)
    single = build_loaders(cfg, seed=3, device=CPU)
    shards = _shards(cfg, world)
    for epoch in (1, 2):
        single.train.set_epoch(epoch)
        for loaders in shards:
            loaders.train.set_epoch(epoch)
        reference = list(single.train)
        per_rank = [list(loaders.train) for loaders in shards]
        assert {len(b) for b in per_rank} == {len(per_rank[0])}  # every rank takes as many steps
        for step in range(len(reference) - 1):  # the last step differs only by padding
            x, y = _union_of_step(per_rank, step)
            torch.testing.assert_close(x, reference[step][0], rtol=0, atol=0)
            assert torch.equal(y, reference[step][1])


def test_epochs_draw_new_orders_on_every_rank():
    cfg = DataConfig(dataset="digits", subset=300, batch_size=16)
    rank0 = _shards(cfg, 2)[0].train
    rank0.set_epoch(1)
    first = torch.cat([y for _, y in rank0])
    rank0.set_epoch(2)
    second = torch.cat([y for _, y in rank0])
    assert not torch.equal(first, second)


def test_validation_is_split_without_padding_and_sums_to_the_whole_set():
    cfg = DataConfig(dataset="digits", subset=301, batch_size=9)
    single = build_loaders(cfg, seed=0, device=CPU)
    shards = _shards(cfg, 3, seed=0)
    whole = torch.cat([y for _, y in single.val])
    parts = [torch.cat([y for _, y in loaders.val]) for loaders in shards]
    assert sum(p.numel() for p in parts) == whole.numel()  # no sample counted twice
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.sort(whole).values)


def test_training_shards_are_padded_to_equal_lengths_like_distributed_sampler():
    shard_sizes = [len(EpochShard(10, num_replicas=3, rank=r)) for r in range(3)]
    assert shard_sizes == [4, 4, 4]
    positions = [EpochShard(10, num_replicas=3, rank=r).positions().tolist() for r in range(3)]
    assert positions == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]  # torch's DistributedSampler's own padding
    assert [list(EpochShard(10, num_replicas=3, rank=r, pad=False)) for r in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_the_job_batch_must_divide_over_the_processes():
    assert local_batch_size(64, 4) == 16
    assert local_batch_size(64, 1) == 64
    with pytest.raises(ConfigError, match=r"data.batch_size=50 does not divide over 4 processes.*multiple of 4"):
        local_batch_size(50, 4)
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        EpochShard(10, num_replicas=2, rank=2)


def test_image_folder_shards_cover_the_single_process_batches(image_folder):
    cfg = DataConfig(dataset="imagefolder", root=str(image_folder), batch_size=4, augment=True, val_fraction=0.25)
    single = build_loaders(cfg, seed=5, device=CPU)
    shards = _shards(cfg, 2, seed=5)
    single.train.set_epoch(1)
    for loaders in shards:
        loaders.train.set_epoch(1)
    reference = list(single.train)
    per_rank = [list(loaders.train) for loaders in shards]
    x, y = _union_of_step(per_rank, 0)
    torch.testing.assert_close(x, reference[0][0], rtol=0, atol=0)
    assert torch.equal(y, reference[0][1])
