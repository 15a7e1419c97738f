"""Everything a run needs to carry on, in one file written atomically.

At the end of every epoch the trainer writes ``last.pt`` (model, optimizer,
scheduler, AMP scaler, every RNG state, early-stopping state, the monitor's
step counter and reference weights, the best weights so far, the split, the
config) and, when the epoch was the best so far, ``best.pt`` (the model and
its split: what ``model.weights`` and MLflow's ``checkpoints/best.pt`` hold).

A file is written to a temporary name in the same directory, flushed to disk,
and renamed over the old one, then the directory entry is flushed: a kill at
any moment leaves the previous complete file or the new one, never half of
one. Checkpoints are read with ``weights_only=True``, so a checkpoint cannot
run code: everything in them is tensors and plain Python values.

While a trainer works on a run it holds an exclusive ``flock`` on the
run's ``.lock`` file: the kernel drops it when the process dies, even by
SIGKILL, so on this machine "is that run's trainer still alive?" has an
exact answer (``paramdoctor.liveness.trainer_gone``), and two processes
can never resume the same run at once.

The data order needs no state of its own: every epoch's order and
augmentation follow from the seed and the epoch number
(``paramdoctor.data.in_memory.epoch_generator``).
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paramdoctor.durable import fsync_directory
from paramdoctor.errors import InputError

FORMAT = "paramdoctor-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"
LOCK = ".lock"


def write_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename over ``path``, fsync the directory.

    Ctrl-C and SIGTERM are held back while the file is written: a
    ``KeyboardInterrupt`` raised inside ``torch.save``'s writer leaves its zip
    writer in a broken state, and the ``RuntimeError`` it raises on the way
    out hid the interrupt, so a run stopped at that moment crashed instead of
    ending KILLED. The signal is delivered as soon as the write is done.
    """
    from paramdoctor.tracking.uninterruptible import deferred_signals

    path.parent.mkdir(parents=True, exist_ok=True)
    with deferred_signals():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(obj, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)


def rng_state() -> dict[str, Any]:
    """Python's, numpy's, torch's and (when present) every CUDA device's RNG state, as weights_only-safe values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate wants tuples all the way down; a save/load round trip may give lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class CheckpointDir:
    """``<checkpoint_dir>/<run_id>/``: where one run's ``last.pt`` and ``best.pt`` live."""

    def __init__(self, root: str | os.PathLike[str], run_id: str) -> None:
        self.path = Path(root).expanduser().resolve() / run_id
        self.run_id = run_id

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def lock(self) -> int:
        """Take the run's lock for as long as this process lives (or until ``unlock``); InputError when taken."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"run {self.run_id} is being trained by another process right now ({self.path / LOCK} is locked); "
                "stop that process first"
            ) from None
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)  # closing the descriptor releases the flock

    def save_last(self, state: dict[str, Any]) -> None:
        write_atomically({"format": FORMAT, "run_id": self.run_id, **state}, self.last)

    def save_best(self, model_state: dict[str, torch.Tensor], *, epoch: int, split: dict | None) -> None:
        write_atomically({"format": FORMAT, "run_id": self.run_id, "epoch": epoch, "model": model_state, "split": split}, self.best)

    def load_last(self) -> dict[str, Any]:
        """The state ``save_last`` wrote; InputError (one line) when it is missing or not ours."""
        path = self.last
        if not path.is_file():
            raise InputError(
                f"no checkpoint to resume run {self.run_id} from: {path} does not exist "
                "(the run died before its first epoch ended, or ran on another machine or with another trainer.checkpoint_dir)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's pickle-protocol notes would add lines to the one error line
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"checkpoint {path} cannot be read ({type(exc).__name__}): it is damaged; start a new run") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("run_id") != self.run_id:
            raise InputError(f"checkpoint {path} is not a paramdoctor checkpoint of run {self.run_id}")
        return state
