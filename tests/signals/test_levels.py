import math

import numpy as np
import pytest

from paramdoctor.signals import chance_loss, initial_loss, near_chance, progress


def test_chance_loss_is_log_num_classes():
    assert chance_loss(10) == pytest.approx(math.log(10))
    with pytest.raises(ValueError):
        chance_loss(1)


def test_initial_loss_ratio():
    good = initial_loss([2.31, 2.29, 2.30, 2.28, 2.33, 1.0], 10)
    assert good.ratio == pytest.approx(1.0, abs=0.01)
    bad = initial_loss([9.0, 8.5, 9.2], 10)
    assert bad.ratio > 3
    assert initial_loss([np.nan], 10) is None


def test_progress_of_a_run_that_learns_and_of_one_that_barely_moves():
    x = np.arange(1, 16, dtype=float)
    learns = progress(x, 0.05 + 2.0 * np.exp(-0.4 * x), start=2.3, num_classes=10)
    assert learns.drop > 0.9 and learns.loss_vs_chance < 0.1
    stuck = progress(x, 2.3 - 0.005 * x, start=2.31, num_classes=10)
    assert stuck.drop < 0.05 and stuck.loss_vs_chance > 0.9
    assert progress(x[:2], x[:2]) is None


def test_progress_best_drop_remembers_a_fall_before_a_blow_up():
    x = np.arange(1, 13, dtype=float)
    loss = np.r_[np.linspace(2.0, 0.3, 6), np.linspace(0.5, 5.0, 6)]
    p = progress(x, loss, start=2.3)
    assert p.drop < 0 and p.best_drop > 0.8


def test_near_chance_when_validation_never_beats_a_uniform_guess():
    x = np.arange(1, 11, dtype=float)
    train = np.linspace(2.2, 0.8, 10)
    stuck = np.r_[2.30, 2.28, 2.27, 2.25, 2.24, 2.23, 2.22, 2.22, 2.21, 2.21]
    res = near_chance(x, stuck, train, 10, val_acc=np.full(10, 0.25))
    assert res.val_loss_best_vs_chance == pytest.approx(0.96, abs=0.01)
    assert res.held == 10 and res.onset == 1.0 and res.val_over_chance == pytest.approx(2.5)
    assert res.train_loss == pytest.approx(np.median(train[-3:])) and res.train_loss_vs_chance == pytest.approx(0.415, abs=0.01)
    learned = near_chance(x, np.linspace(2.0, 0.3, 10), train, 10)
    assert learned.val_loss_best_vs_chance < 0.2 and learned.held == 0 and learned.val_acc is None
    assert near_chance(x[:1], stuck[:1], train[:1], 10) is None
