"""Ultralytics ``results.csv`` (``runs/<task>/<name>/results.csv``), one row per epoch.

Older versions pad the header names with spaces (``      train/box_loss``);
newer ones add a ``time`` column. ``epoch`` is 1-based. Detection and
segmentation log several loss components (``train/box_loss``,
``train/cls_loss``, ``train/dfl_loss`` and their ``val/`` twins): their sum is
the loss the optimizer saw, so it becomes ``train/loss`` and ``val/loss``.
Classification logs ``train/loss``, ``val/loss`` and
``metrics/accuracy_top1``. ``args.yaml`` beside it holds the run's settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, LR, Role
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_objects, loss_sum, read_sidecar_yaml, roles_for, row_from, scalar_config, scalar_params
from paramdoctor.importers.table import INDEX1, ParsedLog

_TRAIN_SUM, _VAL_SUM = "train/loss (sum)", "val/loss (sum)"
_LOSS = re.compile(r"^(train|val)/[A-Za-z0-9_]*loss$")
_LR = re.compile(r"^lr/(pg\d+)$")


def parse(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    header = table.header
    roles = roles_for(header, _role, mapping, path)
    mapped = set((mapping or {}).values())
    components = {side: [c for c in header if _LOSS.match(c) and c.startswith(side) and c not in mapped] for side in ("train", "val")}
    for side, name, key in (("train", _TRAIN_SUM, keys.TRAIN_LOSS), ("val", _VAL_SUM, keys.VAL_LOSS)):
        if components[side] and key not in (mapping or {}):
            roles[name] = Role(key, EVAL)
    rows = []
    for line, obj in csv_objects(header, table.rows):
        for side, name in (("train", _TRAIN_SUM), ("val", _VAL_SUM)):
            total = loss_sum(obj, components[side], line, path)
            if total is not None:
                obj[name] = total
        rows.append(row_from(obj, roles, ("epoch",), line, f"line {line}", path))
    args = read_sidecar_yaml(path.parent / "args.yaml")
    meta: dict[str, Any] = {}
    if isinstance(args.get("epochs"), int):
        meta["max_epochs"] = args["epochs"]
    return ParsedLog(
        tool="ultralytics",
        rows=rows,
        roles=roles,
        epoch_col="epoch",
        epoch_kind=INDEX1,
        restarts=set(table.restarts),
        params=scalar_params(args),
        config=scalar_config(args),
        meta=meta,
    )


def _role(name: str) -> Role | None:
    if name == "metrics/accuracy_top1":
        return Role(keys.VAL_ACC, EVAL)
    match = _LR.match(name)
    if match:
        return Role(LR, EVAL, match.group(1))
    return None  # loss components are summed into one column per side



