"""Any CSV or JSONL of curves: columns recognised by name, or named with ``--map KEY=COLUMN``.

The x counter is the first of ``step``/``global_step``/``current_steps``/
``iteration`` and ``epoch``/``epochs``/``ep`` present, or the column
``--map step=COLUMN`` / ``--map epoch=COLUMN`` names; without one, each row is
one evaluation. Values without names (a headerless CSV, a JSON list of
``[step, train_loss, val_loss]`` rows) have their positions as names: ``0``,
``1``, ``2``... Besides the tools' names, hand-written habits are read
(:func:`~paramdoctor.importers.names.table_role`): a pandas ``to_csv`` with
columns ``train,valid`` holds the two losses, ``val_f1`` is ``val/f1``,
``auc`` beside ``val_auc`` is ``train/auc``.

A log in long form, one row per split and epoch with a ``phase`` (``split``,
``mode``, ``subset``) column saying ``train``, ``val`` or ``test``, is read as
if its columns were named ``train_loss``, ``val_loss``, ``val_f1``... (and
``test_loss``, which is no curve: a test split is not the validation split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.errors import InputError
from paramdoctor.importers.names import (
    COUNTER_KEYS, EPOCH_COLUMNS, STEP_COLUMNS, table_role, with_bare_splits, with_train_twins,
)
from paramdoctor.importers.reading import CsvTable, printable
from paramdoctor.importers.rows import (
    csv_columns, csv_objects, roles_for, row_from, without_worded_columns, without_worded_guesses,
)
from paramdoctor.importers.table import ParsedLog

_PHASE_COLUMNS = ("phase", "split", "mode", "subset", "partition")
_PHASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "eval": "val",
           "dev": "val", "test": "test"}


def parse_csv(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    """A CSV log, read column by column; a long-form one (a phase column) row by row, as JSON lines are."""
    by_lower = _by_lower(table.header)
    if _phase_column(by_lower, _csv_phases(table, by_lower)) is not None:
        objects = csv_objects(table.header, table.rows)
        return _parse(path, "csv", table.header, objects, mapping, set(table.restarts))
    step_col, epoch_col, mapping = _counters(path, table.header, by_lower, mapping)
    counters = {step_col, epoch_col} - {None}
    names = [c for c in dict.fromkeys(table.header) if c not in counters]
    roles = without_worded_columns(roles_for(names, _role_function(names, mapping), mapping, path), table)
    columns = csv_columns(table, roles, (step_col, epoch_col), path)
    shown = [c for c in dict.fromkeys(table.header) if c.strip()]
    return ParsedLog("csv", columns, roles, step_col=step_col, epoch_col=epoch_col, restarts=set(table.restarts), columns=shown)


def parse_objects(path: Path, objects: list[tuple[int, dict[str, Any]]], mapping: dict[str, str] | None) -> ParsedLog:
    columns = [k for _, obj in objects for k in obj]
    return _parse(path, "jsonl", columns, objects, mapping, set())


def _by_lower(columns: list[str]) -> dict[str, str]:
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(column.strip().lower(), column)
    return by_lower


def _counters(
    path: Path, columns: list[str], by_lower: dict[str, str], mapping: dict[str, str] | None
) -> tuple[str | None, str | None, dict[str, str] | None]:
    """(step column, epoch column, the mapping less ``step=``/``epoch=``)."""
    named = {key: col for key, col in (mapping or {}).items() if key in COUNTER_KEYS}  # --map step=COLUMN
    mapping = {key: col for key, col in (mapping or {}).items() if key not in COUNTER_KEYS} or None
    for key, col in named.items():
        if col not in columns:
            shown = ", ".join(printable(c, 40) for c in list(dict.fromkeys(columns))[:25])
            raise InputError(f"{path}: --map {key}={printable(col)}: the log has no column '{printable(col)}' (its columns: {shown})")
    step_col = named.get("step") or next((by_lower[c] for c in STEP_COLUMNS if c in by_lower), None)
    epoch_col = named.get("epoch") or next((by_lower[c] for c in EPOCH_COLUMNS if c in by_lower), None)
    if step_col is not None and step_col == epoch_col:  # one column is one counter: the one --map named
        step_col, epoch_col = (None, epoch_col) if "epoch" in named and "step" not in named else (step_col, None)
    return step_col, epoch_col, mapping


def _role_function(names: list[str], mapping: dict[str, str] | None):
    return with_bare_splits(with_train_twins(with_eval_sets(table_role, names), names), names, mapping)


def _parse(
    path: Path,
    tool: str,
    columns: list[str],
    objects: list[tuple[int, dict[str, Any]]],
    mapping: dict[str, str] | None,
    restarts: set[int],
) -> ParsedLog:
    by_lower = _by_lower(columns)
    step_col, epoch_col, mapping = _counters(path, columns, by_lower, mapping)
    counters = {step_col, epoch_col} - {None}
    phase_col = _phase_column(by_lower, [obj for _, obj in objects])
    if phase_col is not None:
        objects = [(line, _by_phase(obj, phase_col, counters)) for line, obj in objects]
        columns = [k for _, obj in objects for k in obj]
    names = [c for c in dict.fromkeys(columns) if c not in counters]
    roles = without_worded_guesses(roles_for(names, _role_function(names, mapping), mapping, path), objects)
    rows = [row_from(obj, roles, (step_col, epoch_col), line, f"line {line}", path) for line, obj in objects]
    shown = [c for c in dict.fromkeys(columns) if c.strip()]
    return ParsedLog(tool, rows, roles, step_col=step_col, epoch_col=epoch_col, restarts=restarts, columns=shown)


def _csv_phases(table: CsvTable, by_lower: dict[str, str]) -> list[dict[str, Any]]:
    """For :func:`_phase_column`: the rows of a CSV table as their candidate phase cells only (text, or None when empty)."""
    wanted = [by_lower[name] for name in _PHASE_COLUMNS if name in by_lower]
    found = {name: table.column(name) for name in wanted}
    cells = {name: col for name, col in found.items() if col is not None and col.present.all() and len(col.words) == len(table)}
    if not cells:  # a phase column holds a split name on every row: no candidate here
        return [{}] * len(table) if len(table) else []
    return [{name: col.words[i] for name, col in cells.items()} for i in range(len(table))]


def _phase_column(by_lower: dict[str, str], objects: list[dict[str, Any]]) -> str | None:
    """The column saying which split each row measured: on every row, only split names, training and another."""
    for name in _PHASE_COLUMNS:
        column = by_lower.get(name)
        if column is None or not objects:
            continue
        values = [obj.get(column) for obj in objects]
        if not all(isinstance(v, str) for v in values):
            continue
        phases = {_PHASES.get(v.strip().lower()) for v in values}  # type: ignore[union-attr]
        if None not in phases and "train" in phases and len(phases) > 1:
            return column
    return None


def _by_phase(obj: dict[str, Any], phase_col: str, counters: set[str]) -> dict[str, Any]:
    """One long-form row with its values renamed ``<split>_<name>``; the counters keep their names."""
    split = _PHASES[str(obj[phase_col]).strip().lower()]
    return {(k if k in counters else f"{split}_{k}"): v for k, v in obj.items() if k != phase_col}
