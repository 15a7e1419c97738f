"""Shared helpers for the importer tests: fixture paths and curve shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paramdoctor.record import RunRecord

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Path:
    return FIXTURES / name


def overfits(record: RunRecord) -> bool:
    """val/loss bottoms out well before the end and rises while train/loss keeps falling."""
    val = record.get("val/loss")
    train = record.get("train/loss")
    assert val is not None and train is not None
    best = int(np.argmin(val.values))
    return best < len(val) - 2 and val.values[-1] > val.values[best] * 1.05 and train.values[-1] < train.values[best]


def healthy(record: RunRecord) -> bool:
    """Both losses fall to the end (the last validation loss is within 2% of the best)."""
    val = record.get("val/loss")
    train = record.get("train/loss")
    assert val is not None and train is not None
    return val.values[-1] <= val.values.min() * 1.02 and train.values[-1] < train.values[0]
