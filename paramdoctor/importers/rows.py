"""Turn parsed JSON objects or CSV cells into :class:`~paramdoctor.importers.table.Row` values.

A column with a known role (or one the user mapped) must hold numbers: a word
there is an error naming the file, the line and the column. Columns nobody
asked for are skipped, so a timestamp or a run name in a log never gets in
the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from paramdoctor.errors import InputError
from paramdoctor.importers.names import Role, mapped_role
from paramdoctor.importers.reading import NotANumber, printable, read_text, to_counter, to_number
from paramdoctor.importers.table import Row

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
    if not path.is_file():
        return {}
    try:
        text = read_text(path, limit=SIDECAR_BYTES)
        data = yaml.safe_load(text)
    except (InputError, yaml.YAMLError, RecursionError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
