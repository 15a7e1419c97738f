from __future__ import annotations

import math

import pytest

from paramdoctor.training import EarlyStopping


def test_stops_after_patience_epochs_without_improvement_like_lightning():
    es = EarlyStopping(monitor="val/acc", mode="max", patience=2)
    for epoch, value in enumerate([0.5, 0.6, 0.6, 0.59], start=1):
        es.update(epoch, value)
    assert es.best_epoch == 2 and es.best == 0.6 and es.should_stop


def test_min_delta_and_min_mode():
    es = EarlyStopping(monitor="val/loss", mode="min", patience=1, min_delta=0.05)
    assert es.update(1, 1.0)
    assert not es.update(2, 0.97)  # not better by min_delta
    assert es.should_stop and es.best_epoch == 1


def test_nan_is_never_an_improvement():
    es = EarlyStopping(mode="min", monitor="val/loss", patience=3)
    es.update(1, 1.0)
    assert not es.update(2, math.nan)
    assert es.best == 1.0


def test_state_round_trips():
    es = EarlyStopping(patience=4)
    es.update(1, 0.3)
    es.update(2, 0.2)
    other = EarlyStopping()
    other.load_state_dict(es.state_dict())
    assert other == es


def test_rejects_negative_patience():
    with pytest.raises(ValueError, match="patience cannot be negative but got -1"):
        EarlyStopping(patience=-1)
