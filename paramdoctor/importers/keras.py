"""Keras: the ``CSVLogger`` callback's file and ``history.history`` dumped as JSON.

``CSVLogger`` writes ``epoch`` (0-based) then the logs' keys sorted
(``accuracy``, ``learning_rate``, ``loss``, ``val_accuracy``, ``val_loss``),
one row per epoch, separated by ``,`` or by its ``separator`` (``;`` and tab
are sniffed by :func:`~paramdoctor.importers.reading.parse_csv`); with
``append=True`` a second ``fit`` continues the file with the epoch counter
back at 0. ``model.fit(...).history`` is a dict of per-epoch lists with the
same names; it always holds ``loss``. Keras names a compiled metric ``X`` for
the training data and ``val_X`` for the validation data: ``mae`` and
``val_mae`` become ``train/mae`` and ``val/mae``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from paramdoctor.errors import InputError
from paramdoctor.importers.names import table_role, with_train_twins
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_columns, roles_for, row_from, without_worded_columns, without_worded_guesses
from paramdoctor.importers.table import INDEX0, ParsedLog

_EPOCH = "epoch"


def looks_like_history(data: dict[str, Any]) -> bool:
    """``model.fit(...).history``: a dict of lists only, with Keras's ``loss`` among them."""
    return "loss" in data and all(isinstance(v, list) for v in data.values())


def parse_csv(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    roles = without_worded_columns(roles_for(table.header, role_function(table.header), mapping, path), table)
    rows = csv_columns(table, roles, (_EPOCH,), path)
    return ParsedLog(
        "keras", rows, roles, epoch_col=_EPOCH, epoch_kind=INDEX0, restarts=set(table.restarts),
        columns=[c for c in table.header if c],
    )


def parse_history(path: Path, history: dict[str, Any], mapping: dict[str, str] | None) -> ParsedLog:
    for name, values in history.items():
        if not isinstance(values, list):
            raise InputError(f"{path}: history['{name}'] is not a list (expected model.fit(...).history: a dict of per-epoch lists)")
    roles = roles_for(history.keys(), role_function(history.keys()), mapping, path)
    length = max((len(v) for v in history.values()), default=0)
    objects = []
    for epoch in range(length):
        obj: dict[str, Any] = {name: values[epoch] for name, values in history.items() if epoch < len(values)}
        obj[_EPOCH] = epoch
        objects.append((epoch, obj))
    roles = without_worded_guesses(roles, objects)
    rows = [row_from(obj, roles, (_EPOCH,), epoch, f"epoch {epoch}", path) for epoch, obj in objects]
    return ParsedLog("keras", rows, roles, epoch_col=_EPOCH, epoch_kind=INDEX0, runs_splittable=False, columns=list(history))


def role_function(columns: Iterable[str]):
    """Known names, other ``val_<metric>``, and ``X`` beside ``val_X`` as the training ``X`` (Keras's naming)."""
    return with_train_twins(table_role, columns)
