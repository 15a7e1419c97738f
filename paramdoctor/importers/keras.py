"""Keras: the ``CSVLogger`` callback's file and ``history.history`` dumped as JSON.

``CSVLogger`` writes ``epoch`` (0-based) then the logs' keys sorted
(``accuracy``, ``learning_rate``, ``loss``, ``val_accuracy``, ``val_loss``),
one row per epoch; with ``append=True`` a second ``fit`` continues the file
with the epoch counter back at 0. ``model.fit(...).history`` is a dict of
per-epoch lists with the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers.names import generic_role
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_objects, roles_for, row_from
from paramdoctor.importers.table import INDEX0, ParsedLog

_EPOCH = "epoch"


def parse_csv(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    roles = roles_for(table.header, generic_role, mapping, path)
    objects = csv_objects(table.header, table.rows)
    rows = [row_from(obj, roles, (_EPOCH,), line, f"line {line}", path) for line, obj in objects]
    return ParsedLog("keras", rows, roles, epoch_col=_EPOCH, epoch_kind=INDEX0, restarts=set(table.restarts))


def parse_history(path: Path, history: dict[str, Any], mapping: dict[str, str] | None) -> ParsedLog:
    for name, values in history.items():
        if not isinstance(values, list):
            raise InputError(f"{path}: history['{name}'] is not a list (expected model.fit(...).history: a dict of per-epoch lists)")
    roles = roles_for(history.keys(), generic_role, mapping, path)
    length = max((len(v) for v in history.values()), default=0)
    rows = []
    for epoch in range(length):
        obj: dict[str, Any] = {name: values[epoch] for name, values in history.items() if epoch < len(values)}
        obj[_EPOCH] = epoch
        rows.append(row_from(obj, roles, (_EPOCH,), epoch, f"epoch {epoch}", path))
    return ParsedLog("keras", rows, roles, epoch_col=_EPOCH, epoch_kind=INDEX0, runs_splittable=False)
