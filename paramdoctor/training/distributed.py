"""Training under ``torchrun``: the process group, and the few collectives the fit loop needs.

``torchrun --nproc-per-node=N -m paramdoctor train ...`` starts N copies of
the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in their environment (multi-node torchrun the same, with
``--nnodes`` and a rendezvous endpoint). :func:`joined` turns that into a
process group (NCCL between GPUs, each process on ``cuda:LOCAL_RANK``; gloo
between CPUs) and :class:`World` is what the fit loop asks of it:

- the rank-0 process does everything that must happen once: the MLflow run,
  checkpoints, the display; what the other ranks must know from it (the run
  id, a resume point, an early-stopping decision) it broadcasts;
- sums across ranks (losses, correct counts, samples seen) before a metric is
  logged, so a logged metric is the job's, not one rank's.

A plain process (no ``WORLD_SIZE`` in the environment) is a world of one, and
every collective is a no-op: the fit loop is written once.

What the ranks must agree on is decided on rank 0 and broadcast, never
re-derived on each rank: a float that differs in its last bit on one rank
must not make that rank stop while the others wait for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

from paramdoctor.errors import ConfigError, InputError, ParamDoctorError

T = TypeVar("T")

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE")
# How long a rank waits for the others at a collective: rank 0 may spend minutes opening
# the MLflow run on a slow server or writing a large checkpoint while the rest wait.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def launched() -> bool:
    """True in a process ``torchrun`` started (it sets ``RANK`` and ``WORLD_SIZE``)."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise InputError(f"environment variable {name} is not set; start the job with torchrun")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}={raw!r} is not an integer (torchrun sets it)") from None


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # the process group's backends; None: a plain process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that opens the MLflow run, writes checkpoints and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None and self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) when the job runs on CUDA."""
        if self.backend is not None and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # -- collectives (no-ops in a world of one) ---------------------------------------

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; every rank gets the total."""
        if self.is_distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average ``tensor`` over the ranks, in place."""
        if self.is_distributed:
            self.sum_(tensor)
            tensor.div_(self.size)
        return tensor

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.is_distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value``, in rank order, on rank 0 (None on the others)."""
        if not self.is_distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics): all ranks evaluate one model."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0 and its result on every rank; an error there is raised on every rank.

        The other ranks would otherwise wait at the next collective for a
        rank 0 that has left: they raise the same kind of input error (exit
        code 2), rank 0 its own exception.
        """
        if not self.is_distributed:
            return compute()
        if self.is_main:
            try:
                value = compute()
            except BaseException as exc:
                self.broadcast(("error", _error_kind(exc), str(exc)))
                raise
            self.broadcast(("ok", value))
            return value
        message = self.broadcast(None)
        if message[0] == "error":
            _, kind, text = message
            raise _ERROR_KINDS.get(kind, _RankZeroFailed)(text)
        return message[1]


class _RankZeroFailed(ParamDoctorError):
    """Rank 0 failed with something other than an input error; this rank stops with it."""


_ERROR_KINDS: dict[str, type[Exception]] = {"InputError": InputError, "ConfigError": ConfigError}


def _error_kind(exc: BaseException) -> str:
    for name, cls in _ERROR_KINDS.items():
        if isinstance(exc, cls):
            return name
    return type(exc).__name__


SINGLE = World()


def current() -> World:
    """The world of the process group this process joined (:func:`joined`), else a world of one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=_env_int("LOCAL_RANK", 0),
        backend=str(dist.get_backend()),
    )


def backend_for(device: torch.device) -> str:
    """What carries a job's tensors on ``device``: NCCL between CUDA GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def group_backend() -> str:
    """The process group's backends: gloo for CPU tensors (and picklable objects), NCCL too where CUDA is present.

    One group serves a job on CPUs or on GPUs, decided later by ``trainer.device``.
    """
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def joined() -> Iterator[World]:
    """Join the job's process group when torchrun started this process; a world of one otherwise.

    On a machine with CUDA each process takes ``cuda:LOCAL_RANK`` as its
    current device (:meth:`World.device` trains there). The group is
    destroyed on the way out.
    """
    import torch.distributed as dist

    if not launched() or dist.is_initialized():
        yield current()
        return
    if not dist.is_available():
        raise InputError("this PyTorch build has no torch.distributed; run without torchrun")
    rank, size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "start at most that many processes per node (torchrun --nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
    backend = group_backend()
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield World(rank=rank, size=size, local_rank=local_rank, backend=backend)
    finally:
        dist.destroy_process_group()
