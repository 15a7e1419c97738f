"""Any CSV or JSONL of curves: columns recognised by name, or named with ``--map KEY=COLUMN``.

The x counter is the first of ``step``/``global_step``/``current_steps``/
``iteration`` and ``epoch`` present; without one, each row is one evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.names import EPOCH_COLUMNS, STEP_COLUMNS, generic_role
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_objects, roles_for, row_from
from paramdoctor.importers.table import ParsedLog


def parse_csv(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    return _parse(path, "csv", table.header, csv_objects(table.header, table.rows), mapping, set(table.restarts))


def parse_objects(path: Path, objects: list[tuple[int, dict[str, Any]]], mapping: dict[str, str] | None) -> ParsedLog:
    columns = [k for _, obj in objects for k in obj]
    return _parse(path, "jsonl", columns, objects, mapping, set())


def _parse(
    path: Path,
    tool: str,
    columns: list[str],
    objects: list[tuple[int, dict[str, Any]]],
    mapping: dict[str, str] | None,
    restarts: set[int],
) -> ParsedLog:
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(column.strip().lower(), column)
    step_col = next((by_lower[c] for c in STEP_COLUMNS if c in by_lower), None)
    epoch_col = next((by_lower[c] for c in EPOCH_COLUMNS if c in by_lower), None)
    counters = {step_col, epoch_col} - {None}
    names = [c for c in columns if c not in counters]
    roles = roles_for(names, with_eval_sets(generic_role, names), mapping, path)
    rows = [row_from(obj, roles, (step_col, epoch_col), line, f"line {line}", path) for line, obj in objects]
    return ParsedLog(tool, rows, roles, step_col=step_col, epoch_col=epoch_col, restarts=restarts)
