"""fastai's ``CSVLogger`` file (``learn.path/history.csv``).

The header is the ``Recorder``'s ``metric_names``: ``epoch`` (0-based),
``train_loss`` (the smoothed training loss at the epoch's end),
``valid_loss``, then the ``metrics`` by name (``accuracy``, ``error_rate``,
...: all measured on the validation set; with ``train_metrics=True`` they come
as ``train_<name>`` and ``valid_<name>``), then ``time`` as ``mm:ss``. A value
fastai could not compute is written ``None``; a row whose validation was
cancelled is shorter, with ``time`` last. Every ``fit`` call writes the header
again (``CSVLogger(append=True)``) and counts epochs from 0: a new run.
"""

from __future__ import annotations

import re
from pathlib import Path

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, Role, val_metric_key
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_objects, roles_for, row_from
from paramdoctor.importers.table import INDEX0, ParsedLog

_TIME = re.compile(r"^\d+:\d\d(?::\d\d)?$")
_MISSING = {"None", "#na#"}


def looks_like(header: list[str]) -> bool:
    names = set(header)
    return bool(header) and header[0] == "epoch" and "train_loss" in names and ("valid_loss" in names or header[-1] == "time")


def parse(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    header = table.header
    roles = roles_for(header, _role, mapping, path)
    rows = []
    for line, cells in table.rows:
        cells = ["" if c in _MISSING else c for c in cells]
        if len(cells) < len(header) and cells and _TIME.match(cells[-1]) and header[-1] == "time":
            cells = cells[:-1] + [""] * (len(header) - len(cells)) + [cells[-1]]  # validation skipped: time is still last
        (_, obj), = csv_objects(header, [(line, cells)])
        rows.append(row_from(obj, roles, ("epoch",), line, f"line {line}", path))
    return ParsedLog("fastai", rows, roles, epoch_col="epoch", epoch_kind=INDEX0, restarts=set(table.restarts))


def _role(name: str) -> Role | None:
    if name in ("epoch", "time"):
        return None
    if name == "train_loss":
        return Role(keys.TRAIN_LOSS, EVAL)
    if name == "valid_loss":
        return Role(keys.VAL_LOSS, EVAL)
    if name.startswith("train_"):
        return Role(keys.TRAIN_ACC, EVAL) if val_metric_key(name[6:]) == keys.VAL_ACC else None
    if name.startswith("valid_"):
        return Role(val_metric_key(name[6:]), EVAL)
    return Role(val_metric_key(name), EVAL)
