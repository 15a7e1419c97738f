"""Which samples of an epoch one process of a torchrun job trains and evaluates on.

An epoch has one global order of the samples, drawn from ``(seed, epoch)``
(``epoch_generator``). ``data.batch_size`` is the job's batch: with N
processes each one takes ``batch_size / N`` samples per step, and rank ``r``
takes the positions ``r, r + N, r + 2N, ...`` of the global order, as
torch's :class:`~torch.utils.data.DistributedSampler` hands them out (padded
with the first positions so that every rank has as many samples and steps).
So the samples of step ``k`` over all ranks are exactly positions
``[k * batch_size, (k + 1) * batch_size)`` of the global order: the same
batch a single process trains on at step ``k``. A job's curves do not depend
on how many processes it ran on, beyond the padding of the last step and the
order of floating-point sums.

Evaluation is strided too but never padded (a padded sample would be counted
twice in ``val/loss``): the ranks' sums add up to the whole validation set.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler


class EpochShard(DistributedSampler):
    """torch's DistributedSampler over the *positions* ``0 .. n-1`` of an epoch's global order.

    Iterating it yields this rank's positions (``shuffle`` is False in the
    sampler: the permutation is the loader's, so that a world of one keeps the
    order a plain process has always had). ``pad=False`` (evaluation) gives
    ``r, r + N, ...`` below ``n`` and nothing more.
    """

    def __init__(self, num_samples: int, *, num_replicas: int = 1, rank: int = 0, pad: bool = True) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in a world of {num_replicas}")
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.pad = pad
        if not pad:
            self.num_samples = len(range(rank, num_samples, num_replicas))

    @property
    def total(self) -> int:
        """Samples in the whole epoch (all ranks)."""
        return len(self.dataset)

    def positions(self) -> torch.Tensor:
        """This rank's positions in the epoch's global order, as an int64 tensor."""
        n = self.total
        if self.num_replicas == 1:
            return torch.arange(n)
        if not self.pad:
            return torch.arange(self.rank, n, self.num_replicas)
        return torch.tensor(list(super().__iter__()), dtype=torch.int64)

    def __iter__(self):
        return iter(self.positions().tolist())

    def __len__(self) -> int:
        return self.num_samples


def local_batch_size(batch_size: int, world_size: int, where: str = "data.batch_size") -> int:
    """Each process's share of the job's batch; the batch must divide evenly over the processes."""
    from paramdoctor.errors import ConfigError

    if world_size <= 1:
        return batch_size
    if batch_size % world_size:
        raise ConfigError(
            f"{where}={batch_size} does not divide over {world_size} processes: it is the job's batch, "
            f"split evenly across ranks; use a multiple of {world_size}"
        )
    return batch_size // world_size
