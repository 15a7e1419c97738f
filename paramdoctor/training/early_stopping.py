"""Early stopping with Lightning's names: ``monitor``, ``mode``, ``patience``, ``min_delta``.

It only decides; the fit loop keeps the best weights. Its whole state is a plain
dict so a checkpoint can save and restore it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    monitor: str = "val/acc"
    mode: str = "max"
    patience: int = 5
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max' but got {self.mode!r}.")
        if self.patience < 0:
            raise ValueError(f"patience cannot be negative but got {self.patience}.")
        if self.min_delta < 0:
            raise ValueError(f"min_delta cannot be negative but got {self.min_delta}.")

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record the epoch's value; True when it is the new best."""
        if self.improved(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        # Lightning's rule: stop once ``patience`` epochs in a row brought no improvement.
        return self.wait > 0 and self.wait >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
