"""From a tool's log rows to paramdoctor series: split appended runs, decide epoch or step, build curves.

Every importer reduces its file to :class:`ParsedLog`: rows in the order the
tool wrote them, each with numeric values by column, plus the role of each
column (:mod:`paramdoctor.importers.names`). The rest is shared:

* **runs** — a counter (step, else epoch) that goes down, a repeated CSV
  header, or a changed ``total_steps`` starts a new run;
* **x unit** — evaluations once per epoch are indexed by epoch (1-based);
  evaluations at fractional epochs or several per epoch by global step;
* **train/loss per evaluation** — when the tool logs training loss only every
  few steps (Hugging Face, LLaMA-Factory), it is the mean of the losses logged
  since the previous evaluation, the same quantity as an epoch's mean loss;
* **evaluation sets** — curves of named sets (``val/<set>/loss``) are listed in
  ``meta["eval_sets"]`` (:mod:`paramdoctor.importers.eval_sets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from paramdoctor import keys
from paramdoctor.importers.eval_sets import finish_eval_sets
from paramdoctor.importers.names import AUTO, EVAL, STEP, Role
from paramdoctor.record import Series

PROGRESS, INDEX0, INDEX1, GUESS = "progress", "index0", "index1", "guess"
_NEAR_INTEGER = 0.05  # HF logs epoch 0.9984 at the end of epoch 1 when gradient accumulation leaves a remainder


@dataclass
class Row:
    values: dict[str, float]  # column -> value (NaN and inf kept)
    line: int  # where it came from, for messages (line number or entry index)


@dataclass
class ParsedLog:
    """A tool's file reduced to rows and column roles (see the module doc)."""

    tool: str
    rows: list[Row]
    roles: dict[str, Role]
    step_col: str | None = None
    epoch_col: str | None = None
    epoch_kind: str = GUESS  # PROGRESS: fractional epochs done (HF); INDEX0/INDEX1: epoch number; GUESS: from the data
    restarts: set[int] = field(default_factory=set)  # row indices that begin a new run
    params: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    runs_splittable: bool = True
    run_names: list[str] | None = None  # one name per run when the file names its runs (a W&B panel export)
    columns: list[str] = field(default_factory=list)  # every column the file holds, for "which columns" messages
    run_counter: str | None = None  # the counter whose going down starts a new run (default: step, else epoch)


@dataclass
class Assembled:
    series: dict[str, Series]
    x_unit: str
    meta: dict[str, Any]


def split_runs(log: ParsedLog) -> list[list[Row]]:
    """The runs in the file, in order; a run begins where a counter goes down or a restart was marked."""
    counter = log.run_counter or _counter_column(log)
    runs: list[list[Row]] = []
    current: list[Row] = []
    previous = -math.inf
    for i, row in enumerate(log.rows):
        value = row.values.get(counter) if counter else None
        restart = i in log.restarts or (value is not None and value < previous)
        if restart and log.runs_splittable and current:
            runs.append(current)
            current = []
        if value is not None:
            previous = value
        current.append(row)
    if current:
        runs.append(current)
    return [run for run in runs if any(col in log.roles for row in run for col in row.values)]


def _counter_column(log: ParsedLog) -> str | None:
    for col in (log.step_col, log.epoch_col):
        if col and log.rows and all(col in row.values for row in log.rows):
            return col
    for col in (log.step_col, log.epoch_col):
        if col:
            return col
    return None


def assemble(rows: list[Row], log: ParsedLog) -> Assembled:
    """Series with paramdoctor keys for one run's rows."""
    roles = {col: role for col, role in log.roles.items() if any(col in row.values for row in rows)}
    kind = _epoch_kind(rows, log)
    val_eval = _eval_rows(rows, roles)
    roles = {col: _resolve(col, role, rows, val_eval, log, kind) for col, role in roles.items()}
    eval_rows = _eval_rows(rows, roles)
    meta: dict[str, Any] = {"evaluations": len(_one_per_evaluation(rows, eval_rows, log.step_col))}
    x_of, x_unit = _x_function(rows, eval_rows, log, kind)

    eval_points: dict[str, dict[float, float]] = {}
    step_points: dict[str, dict[float, float]] = {}
    row_positions: dict[str, list[int]] = {}
    for col, role in roles.items():
        is_eval = role.level == EVAL
        key = role.eval_key() if is_eval else role.step_key()
        if key is None:
            continue
        target = eval_points if is_eval else step_points
        points = target.setdefault(key, {})
        for index, row in enumerate(rows):
            value = row.values.get(col)
            if value is None:
                continue
            x = x_of(index) if is_eval else _step_x(row, index, log)
            if x is None:
                continue
            points[x] = value
            if not is_eval:
                row_positions.setdefault(key, []).append(index)

    series = {key: _series(points) for key, points in {**step_points, **eval_points}.items() if points}
    # Per-step losses give the train/loss that matches each evaluation: always when evaluations are
    # step-indexed (an epoch-end mean would sit at other x), else when the tool logged no per-epoch loss.
    if keys.STEP_LOSS in series and (keys.TRAIN_LOSS not in series or (x_unit == "step" and eval_rows)):
        if eval_rows:
            derived = _loss_per_evaluation(rows, eval_rows, roles, x_of, log)
            if derived:
                series[keys.TRAIN_LOSS] = _series(derived)
        else:  # nothing was evaluated: the logged training losses are the only curve
            x_unit = "step"
            series[keys.TRAIN_LOSS] = series[keys.STEP_LOSS]
    eval_sets = finish_eval_sets(series, [role.eval_key() or "" for role in roles.values()])
    if eval_sets:
        meta["eval_sets"] = eval_sets
    meta.update(_facts(rows, series, log, kind))
    return Assembled(series, x_unit, meta)


def _eval_rows(rows: list[Row], roles: dict[str, Role]) -> list[int]:
    """Rows holding a validation value; failing that, rows holding any once-per-evaluation value."""
    val_cols = [c for c, r in roles.items() if r.level == EVAL and r.key.startswith("val/")]
    cols = val_cols or [c for c, r in roles.items() if r.level == EVAL]
    return [i for i, row in enumerate(rows) if any(c in row.values for c in cols)]


def _resolve(col: str, role: Role, rows: list[Row], val_eval: list[int], log: ParsedLog, kind: str) -> Role:
    """Decide AUTO: a column logged more than once per epoch number, or between evaluations, is per step.

    Fractional epochs (``kind == PROGRESS``) differ on every row, and rows
    without an epoch number (Lightning's ``LearningRateMonitor`` rows may
    carry only the step) cannot be counted per epoch, so there only the
    second test can tell.
    """
    if role.level != AUTO:
        return role
    present = [i for i, row in enumerate(rows) if col in row.values]
    per_step = False
    if log.epoch_col and kind != PROGRESS and all(log.epoch_col in rows[i].values for i in present):
        seen: dict[float, int] = {}
        for i in present:
            epoch = rows[i].values.get(log.epoch_col)
            if epoch is not None:
                seen[epoch] = seen.get(epoch, 0) + 1
        per_step = any(n > 1 for n in seen.values())
    elif val_eval:
        evals = set(val_eval)
        per_step = any(i not in evals for i in present)
    return Role(role.key, STEP if per_step else EVAL, role.lr_group)


def _epoch_kind(rows: list[Row], log: ParsedLog) -> str:
    if log.epoch_kind != GUESS or not log.epoch_col:
        return log.epoch_kind
    epochs = [row.values[log.epoch_col] for row in rows if log.epoch_col in row.values]
    if any(not float(e).is_integer() for e in epochs):
        return PROGRESS
    return INDEX0 if epochs and min(epochs) == 0 else INDEX1


def _x_function(
    rows: list[Row], eval_rows: list[int], log: ParsedLog, kind: str
) -> tuple[Callable[[int], float | None], str]:
    """How a row index maps to the evaluation x, and its unit."""
    ecol, scol = log.epoch_col, log.step_col
    if ecol and eval_rows and all(ecol in rows[i].values for i in eval_rows):
        epochs = [rows[i].values[ecol] for i in _one_per_evaluation(rows, eval_rows, scol)]
        if kind == PROGRESS:
            rounded = [round(e) for e in epochs]
            ok = all(abs(e - r) <= _NEAR_INTEGER and r >= 1 for e, r in zip(epochs, rounded))
            ok = ok and all(b > a for a, b in zip(rounded, rounded[1:]))
            if ok:
                return (lambda i: _rounded(rows[i].values.get(ecol))), "epoch"
        else:
            offset = 1.0 if kind == INDEX0 else 0.0
            ok = all(float(e).is_integer() for e in epochs) and all(b > a for a, b in zip(epochs, epochs[1:]))
            if ok:
                return (lambda i: _shifted(rows[i].values.get(ecol), offset)), "epoch"
    if scol and eval_rows and all(scol in rows[i].values for i in eval_rows):
        return (lambda i: rows[i].values.get(scol)), "step"
    # no usable counter: number the evaluations 1, 2, ... and give values between them to the latest
    ordinal: dict[int, float] = {}
    count = 0
    evals = set(eval_rows)
    for i in range(len(rows)):
        if i in evals:
            count += 1
        if count:
            ordinal[i] = float(count)
    unit = "epoch" if not ecol and not scol else "step"
    return ordinal.get, unit


def _one_per_evaluation(rows: list[Row], eval_rows: list[int], scol: str | None) -> list[int]:
    """Eval rows less those that continue the previous one at the same step (one row per evaluation set, HF)."""
    kept: list[int] = []
    for i in eval_rows:
        step = rows[i].values.get(scol) if scol else None
        if kept and step is not None and rows[kept[-1]].values.get(scol) == step:  # type: ignore[arg-type]
            continue
        kept.append(i)
    return kept


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(round(value))


def _shifted(value: float | None, offset: float) -> float | None:
    return None if value is None else value + offset


def _step_x(row: Row, index: int, log: ParsedLog) -> float:
    if log.step_col and log.step_col in row.values:
        return row.values[log.step_col]
    return float(index + 1)


def _loss_per_evaluation(
    rows: list[Row], eval_rows: list[int], roles: dict[str, Role], x_of: Callable[[int], float | None], log: ParsedLog
) -> dict[float, float]:
    """Mean of the training losses logged since the previous evaluation, at each evaluation's x."""
    loss_cols = [c for c, r in roles.items() if r.level == STEP and r.step_key() == keys.STEP_LOSS]
    out: dict[float, float] = {}
    start = 0
    for end in eval_rows:
        window = [rows[i].values[c] for i in range(start, end + 1) for c in loss_cols if c in rows[i].values]
        x = x_of(end)
        if window and x is not None:
            with np.errstate(all="ignore"):
                out[x] = float(np.mean(np.asarray(window, dtype=float)))
        start = end + 1
    return out


def _series(points: dict[float, float]) -> Series:
    return Series.from_pairs(sorted(points.items()))


def _facts(rows: list[Row], series: dict[str, Series], log: ParsedLog, kind: str) -> dict[str, Any]:
    """Numbers the vocabulary and the rules can use: peak learning rate, steps per epoch, epochs run."""
    facts: dict[str, Any] = {}
    lr_keys = sorted(k for k in series if k.startswith((keys.STEP_LR_PREFIX, keys.EPOCH_LR_PREFIX)))
    lr_keys.sort(key=lambda k: (not k.endswith("/default"), not k.endswith("/pg0"), k))
    for key in lr_keys:
        finite = series[key].values[np.isfinite(series[key].values)]
        if finite.size:
            facts["peak_lr"] = float(np.max(finite))
            break
    ecol, scol = log.epoch_col, log.step_col
    epochs = [row.values[ecol] for row in rows if ecol and ecol in row.values]
    if epochs:
        last = max(epochs)
        facts["epochs_run"] = round(last, 4) if kind == PROGRESS else int(last + (1 if kind == INDEX0 else 0))
    if kind == PROGRESS and ecol and scol:
        ratios = [row.values[scol] / row.values[ecol] for row in rows if row.values.get(ecol, 0) >= 0.5 and scol in row.values]
        if ratios:
            facts["steps_per_epoch"] = int(round(ratios[-1]))
    totals = [row.values["total_steps"] for row in rows if "total_steps" in row.values]
    if totals:  # LLaMA-Factory writes the run's planned number of steps on every line
        facts["max_steps"] = int(totals[-1])
    steps = [row.values[scol] for row in rows if scol and scol in row.values]
    if steps:
        facts["last_step"] = int(max(steps))
    return facts
