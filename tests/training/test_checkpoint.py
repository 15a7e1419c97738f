"""Checkpoints: atomic writes, every RNG stream, refusing what is not ours."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import torch

from paramdoctor.errors import InputError
from paramdoctor.training.checkpoint import CheckpointDir, rng_state, set_rng_state, write_atomically


def test_a_write_that_fails_halfway_leaves_the_previous_file_whole_and_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    write_atomically({"epoch": 1, "w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full halfway")

    with pytest.raises(RuntimeError):
        write_atomically({"epoch": 2, "w": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_ctrl_c_during_the_write_lands_after_it_with_the_file_whole(tmp_path, monkeypatch):
    # a KeyboardInterrupt inside torch.save broke its zip writer and surfaced as a RuntimeError (a crash, not KILLED)
    from paramdoctor.training import checkpoint

    real_save = torch.save

    def save_interrupted(obj, fh):
        signal.raise_signal(signal.SIGINT)  # the handler runs at the next bytecode: inside the write
        real_save(obj, fh)

    monkeypatch.setattr(checkpoint.torch, "save", save_interrupted)
    path = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        write_atomically({"epoch": 3, "w": torch.ones(4)}, path)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert torch.load(path, weights_only=True)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    write_atomically({"rng": rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_load_last_says_where_it_looked_and_refuses_other_files(tmp_path):
    store = CheckpointDir(tmp_path, "abc123")
    with pytest.raises(InputError, match=r"no checkpoint to resume run abc123 from: .*last.pt does not exist"):
        store.load_last()
    store.path.mkdir(parents=True)
    store.last.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        store.load_last()
    write_atomically({"format": "paramdoctor-checkpoint/1", "run_id": "other"}, store.last)
    with pytest.raises(InputError, match="not a paramdoctor checkpoint of run abc123"):
        store.load_last()
    store.save_last({"epoch": 3})
    assert store.load_last()["epoch"] == 3


def test_a_pickle_torch_refuses_as_last_pt_is_one_error_and_no_warning(tmp_path):
    import pathlib
    import pickle
    import warnings

    store = CheckpointDir(tmp_path, "abc123")
    store.path.mkdir(parents=True)
    store.last.write_bytes(pickle.dumps(pathlib.Path("x"), protocol=4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="cannot be read"):
            store.load_last()
    assert not seen
