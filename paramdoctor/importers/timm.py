"""timm's ``summary.csv`` (``output/train/<experiment>/summary.csv``, written by ``timm.utils.update_summary``).

One row per epoch: ``epoch`` (0-based), ``train_<metric>`` (``train_loss``),
``eval_<metric>`` (``eval_loss``, ``eval_top1`` and ``eval_top5`` in percent)
and ``lr`` (the mean over parameter groups). ``train.py`` writes the header
again when a resumed run starts, and the epochs go on from where they were:
only an epoch that goes down starts a new run. ``eval_top1`` is what timm
selects checkpoints by (``--eval-metric top1``), so it is ``meta["monitor"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, LR, Role, val_metric_key
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_columns, read_sidecar_yaml, roles_for, scalar_config, scalar_params
from paramdoctor.importers.table import INDEX0, ParsedLog


def looks_like(header: list[str]) -> bool:
    names = set(header)
    return bool(header) and header[0] == "epoch" and "train_loss" in names and any(n.startswith("eval_") for n in names)


def parse(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    roles = roles_for(table.header, _role, mapping, path)
    rows = csv_columns(table, roles, ("epoch",), path)
    args = read_sidecar_yaml(path.parent / "args.yaml")  # train.py saves its arguments beside the summary
    meta: dict[str, Any] = {}
    if any(role.key == keys.VAL_ACC for role in roles.values()):
        meta.update(monitor=keys.VAL_ACC, mode="max")
    if isinstance(args.get("epochs"), int) and not isinstance(args.get("epochs"), bool):
        meta["max_epochs"] = args["epochs"]
    return ParsedLog("timm", rows, roles, epoch_col="epoch", epoch_kind=INDEX0, params=scalar_params(args),
                     config=scalar_config(args), meta=meta)


def _role(name: str) -> Role | None:
    if name == "train_loss":
        return Role(keys.TRAIN_LOSS, EVAL)
    if name == "eval_loss":
        return Role(keys.VAL_LOSS, EVAL)
    if name == "lr":
        return Role(LR, EVAL)
    if name.startswith("eval_") and len(name) > 5:
        return Role(val_metric_key(name[5:]), EVAL)
    return None
