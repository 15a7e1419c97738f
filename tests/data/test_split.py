from __future__ import annotations

import numpy as np
import pytest

from paramdoctor.data.split import split_indices
from paramdoctor.errors import ConfigError

LABELS = np.repeat(np.arange(5), 40)  # 200 samples, 5 balanced classes


def test_split_is_disjoint_complete_and_deterministic():
    train, val = split_indices(LABELS, val_fraction=0.2, seed=7)
    assert len(val) == 40 and len(train) == 160
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(200))
    again = split_indices(LABELS, val_fraction=0.2, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    other = split_indices(LABELS, val_fraction=0.2, seed=8)
    assert not np.array_equal(val, other[1])


def test_split_and_subset_are_stratified():
    train, val = split_indices(LABELS, val_fraction=0.2, seed=0, subset=50)
    assert np.bincount(LABELS[val]).tolist() == [8] * 5
    assert np.bincount(LABELS[train]).tolist() == [10] * 5


def test_subset_larger_than_the_training_part_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.subset=161 exceeds the 160 training samples"):
        split_indices(LABELS, val_fraction=0.2, seed=0, subset=161)


def test_too_few_samples_for_stratification_still_split():
    labels = np.array([0, 1, 2, 3, 4, 0])
    train, val = split_indices(labels, val_fraction=0.34, seed=0)
    assert len(val) == 2 and len(train) == 4


def test_a_fraction_that_leaves_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match="val_fraction"):
        split_indices(np.array([0, 1]), val_fraction=0.1, seed=0)
