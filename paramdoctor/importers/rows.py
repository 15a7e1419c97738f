"""Turn parsed JSON objects into :class:`~paramdoctor.importers.table.Row` values, CSV tables into columns.

A column with a known role (or one the user mapped) must hold numbers: a word
there is an error naming the file, the line and the column. Columns nobody
asked for are skipped, so a timestamp or a run name in a log never gets in
the way. A CSV table, already numbers column by column, becomes
:class:`~paramdoctor.importers.table.Columns` without a Python object per row
(:func:`csv_columns`), with the same values and the same first error as
:func:`row_from` on each row would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from paramdoctor.errors import InputError, ParamDoctorError
from paramdoctor.importers.names import Role, mapped_role
from paramdoctor.importers.reading import CsvTable, NotANumber, printable, read_text, to_counter, to_number
from paramdoctor.importers.table import Columns, Row

RoleOf = Callable[[str], "Role | None"]
MAX_PARAM_CHARS = 500
SIDECAR_BYTES = 1024 * 1024


def roles_for(columns: Iterable[str], role_of: RoleOf, mapping: dict[str, str] | None, path: Path) -> dict[str, Role]:
    """Roles of the columns that feed paramdoctor keys; mapped columns come last so that they win."""
    columns = list(dict.fromkeys(columns))
    mapped_cols = set((mapping or {}).values())
    roles: dict[str, Role] = {}
    for col in columns:
        if col in mapped_cols:
            continue
        role = role_of(col)
        if role is not None:
            roles[col] = role
    for key, col in (mapping or {}).items():
        if col not in columns:
            shown = ", ".join(printable(c, 40) for c in columns[:25]) + (", ..." if len(columns) > 25 else "")
            raise InputError(
                f"{path}: --map {printable(key)}={printable(col)}: the log has no column '{printable(col)}' (its columns: {shown or 'none'})"
            )
        roles[col] = mapped_role(key)
    return roles


def without_worded_guesses(roles: dict[str, Role], objects: Iterable[tuple[int, dict[str, Any]]]) -> dict[str, Role]:
    """``roles`` less the guessed ones (:attr:`Role.guessed`) whose column holds a value that is not a number.

    A column called ``val_split`` or ``train`` that holds words was never a
    curve: it is left out instead of failing the whole file.
    """
    guessed = {col for col, role in roles.items() if role.guessed}
    worded: set[str] = set()
    for _, obj in objects:
        if not guessed - worded:
            break
        for col in guessed - worded:
            if col in obj:
                try:
                    to_number(obj[col])
                except NotANumber:
                    worded.add(col)
    return {col: role for col, role in roles.items() if col not in worded}


def row_from(
    values: dict[str, Any],
    roles: dict[str, Role],
    counters: tuple[str | None, ...],
    line: int,
    where: str,
    path: Path,
) -> Row:
    """One row: counters (step, epoch) and the role columns as floats."""
    out: dict[str, float] = {}
    for col, raw in values.items():
        is_counter = col in counters
        if not is_counter and col not in roles:
            continue
        try:
            number = to_counter(raw) if is_counter else to_number(raw)
        except NotANumber as exc:
            kind = "a finite step or epoch number" if is_counter else "a number"
            raise InputError(f"{path}: {where}: '{printable(col)}' is {exc}, expected {kind}") from None
        if number is not None:
            out[col] = number
    return Row(out, line)


def scalar_params(data: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, str]:
    """Top-level scalar settings as strings (nested values are left out: they are not hyperparameters)."""
    skipped = set(skip)
    params: dict[str, str] = {}
    for key, value in data.items():
        if key in skipped or value is None or isinstance(value, (dict, list)):
            continue
        if isinstance(value, (bool, int, float, str)):
            params[str(key)[:250]] = str(value)[:MAX_PARAM_CHARS]
    return params


def scalar_config(data: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    skipped = set(skip)
    return {
        str(k): v
        for k, v in data.items()
        if k not in skipped and (isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= MAX_PARAM_CHARS))
    }


def read_sidecar_yaml(path: Path) -> dict[str, Any]:
    """A small settings file next to a log (Lightning ``hparams.yaml``, Ultralytics ``args.yaml``); {} when absent or unreadable.

    The settings are a bonus: a missing or odd file never stops the curves from being read.
    """
    from paramdoctor.config.loading import load_yaml_text

    if not path.is_file():
        return {}
    try:
        text = read_text(path, limit=SIDECAR_BYTES)
        data = load_yaml_text(text, str(path))
    except (ParamDoctorError, RecursionError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def without_worded_columns(roles: dict[str, Role], table: CsvTable) -> dict[str, Role]:
    """:func:`without_worded_guesses` for a CSV table: a guessed column holding a word anywhere is left out."""
    worded = set()
    for col, role in roles.items():
        found = table.column(col) if role.guessed else None
        if found is not None and found.words:
            worded.add(col)
    return {col: role for col, role in roles.items() if col not in worded}


def csv_columns(table: CsvTable, roles: dict[str, Role], counters: tuple[str | None, ...], path: Path) -> Columns:
    """The counters (step, epoch) and role columns of a CSV table as numbers: :func:`row_from` on every row, at once.

    A word in one of them, or a counter that is not a finite number of
    sensible size, is the InputError ``row_from`` raises at its first
    occurrence (by line, then column).
    """
    values: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    first_bad: tuple[int, int, str, str, bool] | None = None  # row, header position, column, text, is_counter
    for col in dict.fromkeys(table.header):
        if not col:
            continue
        is_counter = col in counters
        if not is_counter and col not in roles:
            continue
        found = table.column(col)
        if found is None:
            continue
        values[col], present[col] = found.values, found.present
        bad = {**found.words, **found.odd} if is_counter else found.words
        if bad:
            row = min(bad)
            candidate = (row, table.header.index(col), col, bad[row], is_counter)
            if first_bad is None or candidate[:2] < first_bad[:2]:
                first_bad = candidate
    if first_bad is not None:
        row, _, col, text, is_counter = first_bad
        try:
            to_counter(text) if is_counter else to_number(text)
            detail = repr(text[:40])  # not reached: the cell was kept because it reads as no usable number
        except NotANumber as exc:
            detail = str(exc)
        kind = "a finite step or epoch number" if is_counter else "a number"
        raise InputError(f"{path}: line {int(table.lines[row])}: '{printable(col)}' is {detail}, expected {kind}")
    return Columns(table.lines, values, present)


def csv_objects(header: list[str], rows: list[tuple[int, list[str]]]) -> list[tuple[int, dict[str, str]]]:
    """CSV rows as {column: cell}; empty cells and empty column names are left out."""
    out = []
    for line, cells in rows:
        obj = {name: cell for name, cell in zip(header, cells) if name and cell != ""}
        out.append((line, obj))
    return out


def loss_sum(obj: dict[str, Any], columns: list[str], line: int, path: Path) -> float | None:
    """The sum of a line's loss components (detection logs several; the optimizer sees their sum); None when none is there."""
    total, seen = 0.0, False
    for col in columns:
        try:
            value = to_number(obj.get(col))
        except NotANumber as exc:
            raise InputError(f"{path}: line {line}: '{printable(col)}' is {exc}, expected a number") from None
        if value is not None:
            total, seen = total + value, True
    return total if seen else None
