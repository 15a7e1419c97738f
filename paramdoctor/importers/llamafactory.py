"""LLaMA-Factory's ``trainer_log.jsonl`` (written by its ``LogCallback`` on every ``on_log``).

Each line: ``current_steps``, ``total_steps``, ``loss`` or ``eval_loss``,
``lr``, ``epoch`` (fraction done), ``percentage``, ``elapsed_time``,
``remaining_time`` and more; missing values are left out of the line.
``accuracy`` there is the DPO reward accuracy, not a validation accuracy, so
it is not read. Without ``overwrite_output_dir`` a new run appends to the same
file: a step counter that goes down or a new ``total_steps`` starts a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, LR, STEP, Role
from paramdoctor.importers.reading import JsonLines
from paramdoctor.importers.rows import roles_for, row_from
from paramdoctor.importers.table import PROGRESS, ParsedLog

_ROLES = {
    "loss": Role(keys.STEP_LOSS, STEP),
    "lr": Role(LR, STEP),
    "learning_rate": Role(LR, STEP),
    "grad_norm": Role(keys.STEP_GRAD_NORM, STEP),
    "eval_loss": Role(keys.VAL_LOSS, EVAL),
    "eval_accuracy": Role(keys.VAL_ACC, EVAL),
}


def parse(path: Path, lines: JsonLines, mapping: dict[str, str] | None) -> ParsedLog:
    columns = [k for _, obj in lines.objects for k in obj]
    roles = roles_for(columns, _ROLES.get, mapping, path)
    rows = []
    restarts: set[int] = set()
    previous_total: Any = None
    for index, (line, obj) in enumerate(lines.objects):
        rows.append(row_from(obj, roles, ("current_steps", "epoch", "total_steps"), line, f"line {line}", path))
        total = obj.get("total_steps")
        if previous_total is not None and total is not None and total != previous_total:
            restarts.add(index)
        if total is not None:
            previous_total = total
    meta: dict[str, Any] = {}
    last = lines.objects[-1][1] if lines.objects else {}
    meta["finished"] = last.get("percentage") == 100
    if lines.truncated_last_line:
        meta["truncated_last_line"] = True
    return ParsedLog(
        tool="llamafactory",
        rows=rows,
        roles=roles,
        step_col="current_steps",
        epoch_col="epoch",
        epoch_kind=PROGRESS,
        restarts=restarts,
        meta=meta,
    )
