"""Curve helpers the anchors share: aligned evaluation rows, as-of look-ups, LR and telemetry access.

Pure numpy over :class:`paramdoctor.record.RunRecord`; nothing from the engine
but :func:`paramdoctor.engine.context.accuracy` (fraction/percent normalising).
Every helper tolerates missing, empty, short and non-finite series: missing
values come back as ``None``, non-finite ones as ``nan``/``inf`` (evidence the
anchors judge themselves).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from paramdoctor import keys
from paramdoctor.engine.context import accuracy
from paramdoctor.record import RunRecord, Series

Finding = tuple[str, str, str]  # (check name, category, one-line evidence)


@dataclass(frozen=True)
class Row:
    """One evaluation as a Keras ``History`` row: the x it was taken at and the four metrics (None = not logged)."""

    x: float
    train_loss: float | None
    val_loss: float | None
    train_acc: float | None
    val_acc: float | None


def series(record: RunRecord, key: str) -> Series | None:
    s = record.get(key)
    return s if s is not None and s.values.size else None


def acc_series(record: RunRecord, key: str) -> Series | None:
    """An accuracy curve as a fraction (``paramdoctor.engine.context.accuracy``)."""
    return accuracy(series(record, key))


def value_at(s: Series | None, x: float) -> float | None:
    """The value logged exactly at ``x`` (the last one when x repeats), else None."""
    if s is None:
        return None
    hit = np.nonzero(s.steps == x)[0]
    return float(s.values[hit[-1]]) if hit.size else None


def asof(s: Series | None, x: float) -> float | None:
    """The last value logged at or before ``x``, else None."""
    if s is None:
        return None
    i = int(np.searchsorted(s.steps, x, side="right")) - 1
    return float(s.values[i]) if i >= 0 else None


def finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


def unit(record: RunRecord) -> str:
    return record.x_unit


def _count(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def steps_per_epoch(record: RunRecord) -> int | None:
    return _count(record.meta.get("steps_per_epoch")) or _count(record.tags.get(keys.TAG_STEPS_PER_EPOCH))


def max_epochs(record: RunRecord) -> int | None:
    return _count(record.meta.get("max_epochs"))


def _mean_step_loss(record: RunRecord, lo: float, hi: float) -> float | None:
    """Mean of ``step/loss`` over optimizer steps in (lo, hi]; None when no step falls there."""
    s = series(record, keys.STEP_LOSS)
    if s is None:
        return None
    sel = (s.steps > lo) & (s.steps <= hi)
    if not sel.any():
        return None
    return float(np.mean(s.values[sel]))  # a NaN step makes the mean NaN, as a framework's epoch mean would


def eval_rows(record: RunRecord) -> list[Row]:
    """The run as a Keras ``History``: one row per evaluation.

    Rows sit at the x positions of ``val/loss`` and ``val/acc``; a run without
    validation gets one row per ``train/loss``/``train/acc`` point. Validation
    values are the ones logged at that x; training values are the last ones
    logged at or before it (a per-epoch training mean when the tool logs one).
    Without ``train/loss`` the training loss is the mean of ``step/loss`` since
    the previous row, when steps and rows can be matched.
    """
    tl, vl = series(record, keys.TRAIN_LOSS), series(record, keys.VAL_LOSS)
    ta, va = acc_series(record, keys.TRAIN_ACC), acc_series(record, keys.VAL_ACC)
    xs = _union(vl, va)
    if not xs:
        xs = _union(tl, ta)
    if not xs and record.x_unit == "epoch" and (sl := series(record, keys.STEP_LOSS)) is not None and (spe := steps_per_epoch(record)):
        # only per-step losses (e.g. a run that stopped inside its first epoch): one row per epoch begun
        last = _last_x(sl)
        xs = [float(e) for e in range(1, int(math.ceil(last / spe)) + 1)]
    rows: list[Row] = []
    prev_step = 0.0
    for x in xs:
        train_loss = asof(tl, x)
        if tl is None:
            step = step_of_x(record, x)
            train_loss = None if step is None else _mean_step_loss(record, prev_step, step)
            prev_step = step if step is not None else prev_step
        rows.append(Row(x, train_loss, value_at(vl, x), asof(ta, x), value_at(va, x)))
    return rows


def _union(*ss: Series | None) -> list[float]:
    xs: set[float] = set()
    for s in ss:
        if s is not None:
            xs.update(float(v) for v in s.steps.tolist() if math.isfinite(v))
    return sorted(xs)


def step_of_x(record: RunRecord, x: float) -> float | None:
    """The last optimizer step at or before evaluation ``x``.

    Step-indexed runs: x itself. Epoch-indexed runs: x times the logged steps
    per epoch, else x's share of the last epoch times the last logged step;
    None when the run logs no step-level series either.
    """
    if record.x_unit == "step":
        return x
    spe = steps_per_epoch(record)
    if spe is not None:
        return x * spe
    last_step = max((_last_x(series(record, k)) for k in record.series if k.startswith(("step/", keys.TELEMETRY_PREFIX))), default=0.0)
    last_x = max((_last_x(series(record, k)) for k in (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.TRAIN_ACC, keys.VAL_ACC)), default=0.0)
    if last_step <= 0 or last_x <= 0:
        return None
    return x / last_x * last_step


def _last_x(s: Series | None) -> float:
    """The largest finite x of a series (0 when none)."""
    if s is None:
        return 0.0
    xs = s.steps[np.isfinite(s.steps)]
    return float(xs.max()) if xs.size else 0.0


def saved_steps(s: Series | None, interval: int) -> Series | None:
    """The points a framework hook with ``save_interval=interval`` would have saved, from what was logged.

    A hook counts steps from 0 and saves when ``step % interval == 0``;
    paramdoctor's optimizer steps are 1-based, so the saved steps are
    1, 1 + interval, 1 + 2 * interval, ... For each, the first logged point in
    ``[target, target + interval)`` stands in (the exact step when every step
    is logged).
    """
    if s is None:
        return None
    ok = np.isfinite(s.steps)
    steps, values = s.steps[ok], s.values[ok]
    if not steps.size:
        return None
    slot = np.floor((steps - 1) / interval)
    keep = np.ones(steps.size, dtype=bool)
    keep[1:] = slot[1:] != slot[:-1]  # first point of each save slot (steps are sorted)
    keep &= steps >= 1
    if not keep.any():
        return None
    return Series(steps[keep], values[keep])


def lr_series(record: RunRecord) -> dict[str, tuple[str, Series]]:
    """Learning-rate curves by group: ``{group: (level, series)}`` with level "epoch" or "step"."""
    out: dict[str, tuple[str, Series]] = {}
    for prefix, level in ((keys.EPOCH_LR_PREFIX, "epoch"), (keys.STEP_LR_PREFIX, "step")):
        for key in record.keys_with_prefix(prefix):
            group = key[len(prefix):]
            if group not in out and (s := series(record, key)) is not None:
                if level == "epoch" and record.x_unit != "epoch":
                    continue  # an epoch-level LR cannot be placed on a step-indexed row
                out[group] = (level, s)
    return out


def configured_lrs(record: RunRecord) -> dict[str, float]:
    """Learning rates the run's configuration names (used only when no LR curve was logged)."""
    cfg = record.config if isinstance(record.config, dict) else {}
    found: dict[str, float] = {}
    opt = cfg.get("optimizer")
    candidates = []
    if isinstance(opt, dict):
        candidates += [("optimizer.lr", opt.get("lr")), ("optimizer.backbone_lr", opt.get("backbone_lr"))]
    candidates += [(k, cfg.get(k)) for k in ("learning_rate", "lr", "lr0")]
    candidates += [(f"params.{k}", record.params.get(k)) for k in ("learning_rate", "lr")]
    for name, v in candidates:
        if v is None or isinstance(v, bool):
            continue
        try:
            found[name] = float(v)
        except (TypeError, ValueError):
            continue
    return found


def telemetry(record: RunRecord, field: str) -> dict[str, Series]:
    """``{group: series}`` for one telemetry field (grad_norm, update_ratio, drift)."""
    out: dict[str, Series] = {}
    for key in record.keys_with_prefix(keys.TELEMETRY_PREFIX):
        parsed = keys.parse_telemetry(key)
        if parsed and parsed[1] == field and (s := series(record, key)) is not None:
            out[parsed[0]] = s
    return out


def ordered_groups(names) -> list[str]:
    """Layer groups from input to output: ``stem`` first, ``head`` last, the rest in natural order."""

    def rank(name: str) -> tuple:
        leaf = name.rsplit(".", 1)[-1]
        where = 0 if leaf == "stem" else 2 if leaf == "head" else 1
        return (where, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)])

    return sorted(names, key=rank)
