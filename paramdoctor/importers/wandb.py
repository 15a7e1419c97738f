"""Weights & Biases CSV exports: a chart panel's data, or one run's history.

* **Panel export** (a line plot's menu, "Export panel data" as CSV): the
  x-axis first (``Step`` by default, or the custom axis such as ``epoch``),
  then for every run on the chart and every plotted metric
  ``"<run> - <metric>"`` with its ``__MIN`` and ``__MAX`` (the range of the
  points W&B merged into one when it sampled the curve; the main column is
  kept). Each run is one run of the file: the last by default,
  ``--run-index`` picks another, and the run's name becomes the record's.
* **Run history** (a run's history table exported, or
  ``wandb.Api().run(...).history()`` saved with ``to_csv``): ``_step``,
  ``_runtime``, ``_timestamp`` and every logged key, empty where a row did
  not log it. Hugging Face's ``WandbCallback`` logs its rewritten names
  (``train/loss``, ``eval/loss``, ``train/epoch``) with ``train/global_step``,
  Lightning's ``WandbLogger`` its ``self.log`` names with
  ``trainer/global_step``; these counters win over W&B's own ``_step``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.names import generic_role, hf_rewritten_role
from paramdoctor.importers.reading import CsvTable
from paramdoctor.importers.rows import csv_columns, roles_for, row_from
from paramdoctor.importers.table import GUESS, ParsedLog

_PANEL = re.compile(r"^(?P<run>.+?) - (?P<metric>.+?)(?P<agg>__MIN|__MAX)?$")
_EPOCH_AXES = ("epoch", "train/epoch", "epochs")
_STEP_COLUMNS = ("train/global_step", "trainer/global_step", "global_step", "step", "_step")
_HF_MARKS = ("train/global_step", "train/epoch", "train/learning_rate")
_HISTORY_MARKS = ("_runtime", "_timestamp")


def looks_like_panel(header: list[str]) -> bool:
    return len(header) >= 2 and all(_PANEL.match(name) for name in header[1:] if name)


def looks_like_history(header: list[str]) -> bool:
    names = set(header)
    return "_step" in names and any(mark in names for mark in _HISTORY_MARKS)


def parse_panel(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    x_name = table.header[0]
    by_run: dict[str, dict[str, int]] = {}  # run -> metric -> column index
    for index, name in enumerate(table.header[1:], start=1):
        match = _PANEL.match(name)
        if match and not match.group("agg") and not match.group("metric").startswith("_"):
            by_run.setdefault(match.group("run"), {})[match.group("metric")] = index
    metrics = list(dict.fromkeys(m for columns in by_run.values() for m in columns))
    role_of = _role_function(metrics)
    roles = roles_for([m for m in metrics if m != x_name], role_of, mapping, path)
    is_epoch = x_name.strip().lower() in _EPOCH_AXES
    x = "\x00x"
    rows, restarts, names = [], set(), []
    for run, columns in by_run.items():
        objects = []
        for line, cells in table.rows:
            obj: dict[str, Any] = {m: cells[i] for m, i in columns.items() if i < len(cells) and cells[i] != ""}
            if obj and cells and cells[0] != "":
                obj[x] = cells[0]
                objects.append((line, obj))
        if not any(col in roles for _, obj in objects for col in obj):
            continue
        restarts.add(len(rows))
        names.append(run)
        rows += [row_from(obj, roles, (x,), line, f"line {line}", path) for line, obj in objects]
    return ParsedLog(
        "wandb", rows, roles, step_col=None if is_epoch else x, epoch_col=x if is_epoch else None, epoch_kind=GUESS,
        restarts=restarts - {0}, run_names=names, meta={"x_axis": x_name},
    )


def parse_history(path: Path, table: CsvTable, mapping: dict[str, str] | None) -> ParsedLog:
    names = [n for n in table.header if n]
    step_col = next((c for c in _STEP_COLUMNS if c in names), None)
    epoch_col = next((c for c in names if c.lower() in _EPOCH_AXES), None)
    counters = {step_col, epoch_col}
    columns = [n for n in names if n not in counters and not n.startswith("_")]
    roles = roles_for(columns, _role_function(names), mapping, path)
    rows = csv_columns(table, roles, (step_col, epoch_col), path)
    return ParsedLog("wandb", rows, roles, step_col=step_col, epoch_col=epoch_col, epoch_kind=GUESS,
                     restarts=set(table.restarts))


def _role_function(names: list[str]):
    hf = any(mark in names for mark in _HF_MARKS)
    return with_eval_sets(hf_rewritten_role if hf else generic_role, names)
