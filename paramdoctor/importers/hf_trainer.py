"""Hugging Face Trainer's ``trainer_state.json``.

``log_history`` holds one entry per ``on_log``: training entries (``loss``,
``learning_rate``, ``grad_norm``, ``epoch``, ``step``) every
``logging_steps``, evaluation entries (``eval_loss``, ``eval_<metric>``,
``eval_runtime``, ...) every evaluation, and a last summary (``train_loss``,
``train_runtime``, ...). ``epoch`` is the fraction of epochs done (1.0 at the
end of the first), so evaluations at whole epochs are indexed by epoch, the
others by global step. Several evaluation sets (``eval_dataset`` a dict) log
``eval_<set>_loss``, ``eval_<set>_accuracy``: see :mod:`paramdoctor.importers.eval_sets`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.names import EVAL, Role, hf_role
from paramdoctor.importers.rows import roles_for, row_from, scalar_config, scalar_params
from paramdoctor.importers.table import PROGRESS, ParsedLog

_NOT_PARAMS = (
    "log_history", "stateful_callbacks", "trial_params", "trial_name", "best_metric", "best_model_checkpoint",
    "best_global_step", "is_hyper_param_search", "is_local_process_zero", "is_world_process_zero",
)
_MONITOR_OF = {"eval_loss": keys.VAL_LOSS, "eval_accuracy": keys.VAL_ACC, "eval_acc": keys.VAL_ACC}


def parse(path: Path, data: dict[str, Any], mapping: dict[str, str] | None, tool: str = "hf_trainer") -> ParsedLog:
    history = data.get("log_history")
    if not isinstance(history, list):
        raise InputError(f"{path}: 'log_history' is not a list (is this a Hugging Face trainer_state.json?)")
    entries: list[tuple[int, dict[str, Any]]] = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: log_history[{i}] is not an object (the file is damaged; use another checkpoint's copy)")
        entries.append((i, entry))
    columns = [k for _, entry in entries for k in entry]
    roles = roles_for(columns, with_eval_sets(hf_role, columns), mapping, path)
    rows = [row_from(entry, roles, ("step", "epoch"), i, f"log_history[{i}]", path) for i, entry in entries]
    meta: dict[str, Any] = {}
    for key in ("best_metric", "best_model_checkpoint", "best_global_step", "max_steps", "eval_steps", "logging_steps"):
        value = data.get(key)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            meta[key] = value
    epochs = data.get("num_train_epochs")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs > 0:
        meta["max_epochs"] = epochs
    monitor = _monitor_from_best(data.get("best_metric"), entries, roles)
    if monitor:
        meta["monitor"] = monitor
    finished = any("train_runtime" in entry for _, entry in entries)
    meta["finished"] = finished
    return ParsedLog(
        tool=tool,
        rows=rows,
        roles=roles,
        step_col="step",
        epoch_col="epoch",
        epoch_kind=PROGRESS,
        params=scalar_params(data, _NOT_PARAMS),
        config=scalar_config(data, _NOT_PARAMS),
        meta=meta,
        runs_splittable=False,  # one state file is one run (a resumed run continues its log_history)
    )


def _monitor_from_best(best: Any, entries: list[tuple[int, dict[str, Any]]], roles: dict[str, Role]) -> str | None:
    """Which metric ``best_metric`` is (``metric_for_best_model`` is not in the state file): the one that logged it.

    Losses and accuracies first (plain, then a named set's), then any other evaluation metric.
    """
    if isinstance(best, bool) or not isinstance(best, (int, float)):
        return None
    for name, key in _MONITOR_OF.items():
        if any(entry.get(name) == best for _, entry in entries):
            return key
    candidates = [(col, role.key) for col, role in roles.items() if role.level == EVAL and role.key.startswith("val/")]
    candidates.sort(key=lambda item: not item[1].endswith(("/loss", "/acc")))
    for col, key in candidates:
        if any(entry.get(col) == best for _, entry in entries):
            return key
    return None
