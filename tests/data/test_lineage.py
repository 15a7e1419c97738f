"""A run's split is part of its identity: reused from the run whose weights it starts from, or refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paramdoctor.data.lineage import SplitRecord, choose_split, fingerprint_arrays, split_of_weights
from paramdoctor.data.split import split_indices
from paramdoctor.errors import ConfigError

LABELS = np.arange(600) % 10


def _split(**kw):
    args = dict(dataset="digits", fingerprint="f00d", seed=2, split_seed=None, val_fraction=0.2, subset=None, parent=None)
    args.update(kw)
    return choose_split(LABELS, **args)


def test_without_a_parent_the_run_seed_splits():
    train, val, record = _split()
    expected = split_indices(LABELS, val_fraction=0.2, seed=2)
    assert np.array_equal(train, expected[0]) and np.array_equal(val, expected[1])
    assert record == SplitRecord("digits", "f00d", 2, 0.2, None)


def test_a_parent_on_the_same_data_lends_its_split_so_no_training_sample_is_validated():
    parent = SplitRecord("digits", "f00d", 1, 0.2, None)
    train, val, record = _split(parent=parent)
    parent_train, _ = split_indices(LABELS, val_fraction=0.2, seed=1)
    assert record.seed == 1 and np.intersect1d(parent_train, val).size == 0


def test_an_explicit_split_seed_that_leaks_is_refused_with_the_count_and_the_fix():
    parent = SplitRecord("digits", "f00d", 1, 0.2, None)
    with pytest.raises(ConfigError, match=r"trained on \d+ of this run's 120 validation samples.*data.split_seed=null"):
        _split(parent=parent, split_seed=5)


def test_a_different_val_fraction_that_leaks_is_refused():
    with pytest.raises(ConfigError, match="data.val_fraction=0.2"):
        _split(parent=SplitRecord("digits", "f00d", 1, 0.2, None), val_fraction=0.3)


def test_other_data_is_not_constrained():
    _, _, record = _split(parent=SplitRecord("digits", "beef", 1, 0.2, None), split_seed=5)
    assert record.seed == 5


def test_an_older_run_without_a_fingerprint_matches_by_dataset_name():
    assert SplitRecord("digits", None, 1, 0.2).same_data(SplitRecord("digits", "f00d", 3, 0.2))
    assert not SplitRecord("cifar10", None, 1, 0.2).same_data(SplitRecord("digits", "f00d", 3, 0.2))


def test_the_fingerprint_follows_the_content():
    images = np.zeros((4, 1, 2, 2), np.uint8)
    a = fingerprint_arrays(images, np.arange(4))
    assert a == fingerprint_arrays(images.copy(), np.arange(4))
    assert a != fingerprint_arrays(images, np.arange(4)[::-1].copy())


def test_split_of_weights_reads_a_checkpoint_file_and_ignores_bare_state_dicts(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.ones(1)}, "split": {"dataset": "digits", "fingerprint": "f", "seed": 4, "val_fraction": 0.25, "subset": None}}, path)
    assert split_of_weights(str(path)) == SplitRecord("digits", "f", 4, 0.25, None)
    torch.save({"w": torch.ones(1)}, tmp_path / "bare.pt")
    assert split_of_weights(str(tmp_path / "bare.pt")) is None
    assert split_of_weights("IMAGENET1K_V1") is None and split_of_weights(None) is None


def test_split_of_weights_reads_an_older_runs_params(migrated_store_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(migrated_store_uri)
    run = client.create_run(client.create_experiment("e"))
    for key, value in {"data.dataset": "digits", "seed": "7", "data.val_fraction": "0.2", "data.subset": "null"}.items():
        client.log_param(run.info.run_id, key, value)
    assert split_of_weights(f"runs:/{run.info.run_id}/checkpoints/best.pt") == SplitRecord("digits", None, 7, 0.2, None)
