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

The rows are held as :class:`Columns` (float arrays and presence masks), and
every step above is an array operation: a log of a million steps assembles
in well under a second. Importers that read entry by entry hand over
:class:`Row` lists, converted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
class Columns:
    """Rows as columns: each column's values (float; NaN and inf kept) and the rows that hold one.

    A log of a million steps is a few arrays, not a million dicts; every
    step of assembling a run below is an array operation over them.
    """

    lines: np.ndarray  # where each row came from (line number or entry index)
    values: dict[str, np.ndarray]  # meaningless where the row holds no value
    present: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.lines.size)

    @classmethod
    def from_rows(cls, rows: list[Row]) -> "Columns":
        positions: dict[str, list[int]] = {}
        numbers: dict[str, list[float]] = {}
        for i, row in enumerate(rows):
            for col, value in row.values.items():
                positions.setdefault(col, []).append(i)
                numbers.setdefault(col, []).append(value)
        n = len(rows)
        values, present = {}, {}
        for col, where in positions.items():
            values[col] = np.full(n, math.nan)
            values[col][where] = numbers[col]
            present[col] = np.zeros(n, dtype=bool)
            present[col][where] = True
        return cls(np.asarray([row.line for row in rows], dtype=np.int64), values, present)

    def mask(self, col: str | None) -> np.ndarray:
        """Which rows hold a value of ``col`` (none for a column the log does not have)."""
        found = self.present.get(col) if col is not None else None
        return found if found is not None else np.zeros(len(self), dtype=bool)

    def has(self, col: str | None) -> bool:
        return bool(self.mask(col).any())

    def held(self, col: str | None) -> np.ndarray:
        """The values of ``col`` in the rows that hold one, in row order."""
        if col is None or col not in self.values:
            return np.empty(0)
        return self.values[col][self.present[col]]

    def slice(self, start: int, stop: int) -> "Columns":
        return Columns(
            self.lines[start:stop],
            {c: v[start:stop] for c, v in self.values.items()},
            {c: p[start:stop] for c, p in self.present.items()},
        )


@dataclass
class ParsedLog:
    """A tool's file reduced to rows and column roles (see the module doc).

    ``rows`` is given as a list of :class:`Row` (read entry by entry) or as
    :class:`Columns` (a CSV read column by column); it is kept as Columns.
    """

    tool: str
    rows: list[Row] | Columns
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

    def __post_init__(self) -> None:
        if not isinstance(self.rows, Columns):
            self.rows = Columns.from_rows(self.rows)

    @property
    def table(self) -> Columns:
        assert isinstance(self.rows, Columns)
        return self.rows


@dataclass
class Assembled:
    series: dict[str, Series]
    x_unit: str
    meta: dict[str, Any]


def split_runs(log: ParsedLog) -> list[Columns]:
    """The runs in the file, in order; a run begins where a counter goes down or a restart was marked."""
    table = log.table
    n = len(table)
    counter = log.run_counter or _counter_column(log)
    starts = {i for i in log.restarts if 0 < i < n} if log.runs_splittable else set()
    if log.runs_splittable and counter is not None and counter in table.values:
        held = np.flatnonzero(table.mask(counter))
        values = table.values[counter][held]
        starts.update(held[1:][values[1:] < values[:-1]].tolist())
    bounds = [0, *sorted(starts), n]
    runs = [table.slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    return [run for run in runs if any(run.has(col) for col in log.roles)]


def _counter_column(log: ParsedLog) -> str | None:
    table = log.table
    for col in (log.step_col, log.epoch_col):
        if col and len(table) and bool(table.mask(col).all()):
            return col
    for col in (log.step_col, log.epoch_col):
        if col:
            return col
    return None


def assemble(rows: list[Row] | Columns, log: ParsedLog) -> Assembled:
    """Series with paramdoctor keys for one run's rows."""
    table = rows if isinstance(rows, Columns) else Columns.from_rows(rows)
    roles = {col: role for col, role in log.roles.items() if table.has(col)}
    kind = _epoch_kind(table, log)
    val_eval = _eval_rows(table, roles)
    roles = {col: _resolve(col, role, table, val_eval, log, kind) for col, role in roles.items()}
    eval_rows = _eval_rows(table, roles)
    one = _one_per_evaluation(table, eval_rows, log.step_col)
    meta: dict[str, Any] = {"evaluations": int(one.size)}
    eval_x, x_unit = _x_positions(table, eval_rows, one, log, kind)
    step_x = _step_positions(table, log)

    eval_points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    step_points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for col, role in roles.items():
        is_eval = role.level == EVAL
        key = role.eval_key() if is_eval else role.step_key()
        if key is None:
            continue
        parts = (eval_points if is_eval else step_points).setdefault(key, [])
        xs = eval_x if is_eval else step_x
        held = table.mask(col) & ~np.isnan(xs)
        parts.append((xs[held], table.values[col][held]))

    series = {}
    for key, parts in {**step_points, **eval_points}.items():
        if any(x.size for x, _ in parts):
            series[key] = _series(np.concatenate([x for x, _ in parts]), np.concatenate([v for _, v in parts]))
    # Per-step losses give the train/loss that matches each evaluation: always when evaluations are
    # step-indexed (an epoch-end mean would sit at other x), else when the tool logged no per-epoch loss.
    if keys.STEP_LOSS in series and (keys.TRAIN_LOSS not in series or (x_unit == "step" and eval_rows.size)):
        if eval_rows.size:
            derived = _loss_per_evaluation(table, eval_rows, roles, eval_x)
            if derived is not None:
                series[keys.TRAIN_LOSS] = derived
        else:  # nothing was evaluated: the logged training losses are the only curve
            x_unit = "step"
            series[keys.TRAIN_LOSS] = series[keys.STEP_LOSS]
    eval_sets = finish_eval_sets(series, [role.eval_key() or "" for role in roles.values()])
    if eval_sets:
        meta["eval_sets"] = eval_sets
    meta.update(_facts(table, series, log, kind))
    return Assembled(series, x_unit, meta)


def _eval_rows(table: Columns, roles: dict[str, Role]) -> np.ndarray:
    """Rows holding a validation value; failing that, rows holding any once-per-evaluation value."""
    val_cols = [c for c, r in roles.items() if r.level == EVAL and r.key.startswith("val/")]
    cols = val_cols or [c for c, r in roles.items() if r.level == EVAL]
    held = np.zeros(len(table), dtype=bool)
    for col in cols:
        held |= table.mask(col)
    return np.flatnonzero(held)


def _resolve(col: str, role: Role, table: Columns, val_eval: np.ndarray, log: ParsedLog, kind: str) -> Role:
    """Decide AUTO: a column logged more than once per epoch number, or between evaluations, is per step.

    Fractional epochs (``kind == PROGRESS``) differ on every row, and rows
    without an epoch number (Lightning's ``LearningRateMonitor`` rows may
    carry only the step) cannot be counted per epoch, so there only the
    second test can tell.
    """
    if role.level != AUTO:
        return role
    present = table.mask(col)
    per_step = False
    if log.epoch_col and kind != PROGRESS and bool(table.mask(log.epoch_col)[present].all()):
        epochs = table.values[log.epoch_col][present]
        per_step = bool(np.unique(epochs).size < epochs.size)
    elif val_eval.size:
        evals = np.zeros(len(table), dtype=bool)
        evals[val_eval] = True
        per_step = bool((present & ~evals).any())
    return Role(role.key, STEP if per_step else EVAL, role.lr_group)


def _epoch_kind(table: Columns, log: ParsedLog) -> str:
    if log.epoch_kind != GUESS or not log.epoch_col:
        return log.epoch_kind
    epochs = table.held(log.epoch_col)
    if bool((~np.isfinite(epochs) | (np.floor(epochs) != epochs)).any()):
        return PROGRESS
    return INDEX0 if epochs.size and float(np.min(epochs)) == 0 else INDEX1


def _x_positions(
    table: Columns, eval_rows: np.ndarray, one: np.ndarray, log: ParsedLog, kind: str
) -> tuple[np.ndarray, str]:
    """The evaluation x of every row (NaN: none), and its unit."""
    ecol, scol = log.epoch_col, log.step_col
    if ecol and eval_rows.size and bool(table.mask(ecol)[eval_rows].all()):
        epoch, held = table.values[ecol], table.mask(ecol)
        epochs = epoch[one]
        if kind == PROGRESS:
            rounded = np.round(epochs)
            ok = bool(np.all((np.abs(epochs - rounded) <= _NEAR_INTEGER) & (rounded >= 1)))
            ok = ok and bool(np.all(rounded[1:] > rounded[:-1]))
            if ok:
                return np.where(held, np.round(epoch), math.nan), "epoch"
        else:
            offset = 1.0 if kind == INDEX0 else 0.0
            ok = bool(np.all(np.floor(epochs) == epochs)) and bool(np.all(epochs[1:] > epochs[:-1]))
            if ok:
                return np.where(held, epoch + offset, math.nan), "epoch"
    if scol and eval_rows.size and bool(table.mask(scol)[eval_rows].all()):
        return np.where(table.mask(scol), table.values[scol], math.nan), "step"
    # no usable counter: number the evaluations 1, 2, ... and give values between them to the latest
    is_eval = np.zeros(len(table), dtype=bool)
    is_eval[eval_rows] = True
    count = np.cumsum(is_eval).astype(float)
    unit = "epoch" if not ecol and not scol else "step"
    return np.where(count > 0, count, math.nan), unit


def _one_per_evaluation(table: Columns, eval_rows: np.ndarray, scol: str | None) -> np.ndarray:
    """Eval rows less those that continue the previous one at the same step (one row per evaluation set, HF)."""
    if not scol or eval_rows.size < 2 or scol not in table.values:
        return eval_rows
    held = table.mask(scol)[eval_rows]
    steps = table.values[scol][eval_rows]
    same = held[1:] & held[:-1] & (steps[1:] == steps[:-1])
    return eval_rows[np.concatenate(([True], ~same))]


def _step_positions(table: Columns, log: ParsedLog) -> np.ndarray:
    """The x of per-step values: the step counter where the row holds one, else the row's position (1-based)."""
    index = np.arange(1, len(table) + 1, dtype=float)
    if log.step_col and log.step_col in table.values:
        return np.where(table.mask(log.step_col), table.values[log.step_col], index)
    return index


def _loss_per_evaluation(table: Columns, eval_rows: np.ndarray, roles: dict[str, Role], eval_x: np.ndarray) -> Series | None:
    """Mean of the training losses logged since the previous evaluation, at each evaluation's x."""
    loss_cols = [c for c, r in roles.items() if r.level == STEP and r.step_key() == keys.STEP_LOSS]
    if not loss_cols:
        return None
    held = np.stack([table.mask(c) for c in loss_cols], axis=1)
    values = np.stack([table.values[c] for c in loss_cols], axis=1)
    stream = values[held]  # the losses in file order: row by row, columns in role order
    before = np.concatenate(([0], np.cumsum(held.sum(axis=1))))  # losses before each row
    starts = np.concatenate(([0], eval_rows[:-1] + 1))
    low, high = before[starts], before[eval_rows + 1]
    xs = eval_x[eval_rows]
    keep = (high > low) & ~np.isnan(xs)
    low, high, xs = low[keep], high[keep], xs[keep]
    means = stream[low].copy()  # a window of one loss is its own mean
    with np.errstate(all="ignore"):
        for i in np.flatnonzero(high - low > 1).tolist():
            means[i] = float(np.mean(stream[low[i] : high[i]]))
    return _series(xs, means) if xs.size else None


def _series(xs: np.ndarray, values: np.ndarray) -> Series:
    """One value per x, the last one written (as a dict filled in file order keeps it), sorted by x."""
    if bool(np.all(xs[1:] > xs[:-1])):  # already one per x, in order (a step counter): no copies
        return Series(xs, values)
    order = np.argsort(xs, kind="stable")
    xs, values = xs[order], values[order]
    new = np.concatenate(([True], xs[1:] != xs[:-1]))
    last = np.concatenate((new[1:], [True]))
    return Series(xs[new], values[last])


def _facts(table: Columns, series: dict[str, Series], log: ParsedLog, kind: str) -> dict[str, Any]:
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
    epochs = table.held(ecol)
    if epochs.size:
        last = float(np.max(epochs))
        facts["epochs_run"] = round(last, 4) if kind == PROGRESS else int(last + (1 if kind == INDEX0 else 0))
    if kind == PROGRESS and ecol and scol and ecol in table.values and scol in table.values:
        with_both = np.flatnonzero(table.mask(ecol) & (table.values[ecol] >= 0.5) & table.mask(scol))
        if with_both.size:
            i = int(with_both[-1])
            facts["steps_per_epoch"] = int(round(float(table.values[scol][i]) / float(table.values[ecol][i])))
    if table.has("total_steps"):  # LLaMA-Factory writes the run's planned number of steps on every line
        facts["max_steps"] = int(table.held("total_steps")[-1])
    if scol and table.has(scol):
        facts["last_step"] = int(np.max(table.held(scol)))
    return facts
