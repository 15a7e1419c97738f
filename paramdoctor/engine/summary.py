"""The facts every report opens with: how long the run went, where it was best, how it ended."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paramdoctor import keys
from paramdoctor.engine import context
from paramdoctor.engine.memo import RecordMemo
from paramdoctor.record import RunRecord
from paramdoctor.signals import best_point


def summarize(record: RunRecord, memo: RecordMemo | None = None) -> dict[str, Any]:
    """Run state, epochs run, best point of the monitored metric and the final losses.

    ``best_x`` is in ``x_unit`` (epoch or step); ``best_epoch`` is an epoch
    number (derived from ``steps_per_epoch`` for step-indexed runs, None when
    that is unknown). Numbers are plain floats/ints; None when not recorded.
    ``memo`` is the diagnosis's memo of ``record``, when it has one.
    """
    monitor, mode = context.monitor_of(record) if memo is None else memo.belongs_to(record).monitor()
    curve = record.get(monitor)
    best = best_point(curve.steps, curve.values, mode) if curve is not None else None
    steps_per_epoch = record.meta.get("steps_per_epoch")
    last_x = _last_x(record)
    if record.x_unit == "epoch":
        epochs_run = _int(last_x)
        best_epoch = _int(best.x) if best else None
    else:
        epochs_run = _int(last_x / steps_per_epoch) if last_x is not None and steps_per_epoch else None
        best_epoch = _int(math.ceil(best.x / steps_per_epoch)) if best and steps_per_epoch else None
    return {
        "run_status": record.status,
        "stop_reason": record.meta.get("stop_reason"),
        "x_unit": record.x_unit,
        "epochs_run": epochs_run,
        "evaluations": int(np.isfinite(curve.values).sum()) if curve is not None else 0,
        "monitor": monitor,
        "mode": mode,
        "best_x": _num(best.x) if best else None,
        "best_epoch": best_epoch,
        "best_value": _num(best.value) if best else None,
        "final_train_loss": _last(record, keys.TRAIN_LOSS),
        "final_val_loss": _last(record, keys.VAL_LOSS),
        "final_val_acc": _last(record, keys.VAL_ACC),
    }


def _last_x(record: RunRecord) -> float | None:
    xs = [float(s.steps[-1]) for k in (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.TRAIN_ACC, keys.VAL_ACC) if (s := record.get(k)) is not None]
    return max(xs) if xs else None


def _last(record: RunRecord, key: str) -> float | str | None:
    s = record.get(key)
    if s is None:
        return None
    return _num(float(s.values[-1]))


def _num(value: float) -> float | int | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _int(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else int(round(value))
