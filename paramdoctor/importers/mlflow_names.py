"""Rename the metrics of MLflow runs logged by other tools to paramdoctor keys.

* Hugging Face ``report_to="mlflow"``: every ``on_log`` at ``step = global_step``
  (``loss``, ``learning_rate``, ``grad_norm``, ``epoch``, ``eval_loss``,
  ``eval_<metric>``, and a last ``train_loss`` that is the whole run's mean).
* Lightning ``MLFlowLogger``: ``self.log`` names (``train_loss``,
  ``train_loss_step``/``train_loss_epoch``, ``val_loss``, ``val_acc``,
  ``lr-Adam``) at ``step = global_step``, plus an ``epoch`` metric.
* Keras autolog (``mlflow.tensorflow.autolog``): ``loss``, ``accuracy``,
  ``val_loss``, ``val_accuracy``, ``learning_rate`` at ``step = epoch``
  (0-based, shifted here to paramdoctor's 1-based epochs).

The series go through the same assembly as files (:mod:`paramdoctor.importers.table`),
so a Hugging Face run gets ``train/loss`` at each evaluation from the losses
logged since the previous one.
"""

from __future__ import annotations

import math

from paramdoctor.errors import InputError
from paramdoctor.importers.eval_sets import with_eval_sets
from paramdoctor.importers.load import check_mapping
from paramdoctor.importers.names import HF_SKIP, Role, generic_role, hf_role, mapped_role
from paramdoctor.importers.reading import printable
from paramdoctor.importers.table import INDEX0, ParsedLog, Row, assemble
from paramdoctor.record import Series

_STEP, _EPOCH = "\x00step", "\x00epoch"  # cannot clash with MLflow metric names
_HF_MARKS = ("eval_loss", "eval_runtime", "train_runtime", "total_flos", "eval_samples_per_second")


def normalize_metric_names(
    series_by_mlflow_key: dict[str, Series], mapping: dict[str, str] | None = None
) -> tuple[dict[str, Series], str | None]:
    """(series with paramdoctor keys, the tool that logged them or None).

    ``mapping`` (``{"val/acc": "eval_top1"}``) renames columns first and wins
    over recognised names. Metrics that feed no paramdoctor key keep their
    own names; Hugging Face's run-summary metrics (runtime, FLOPs, the final
    ``train_loss``) are dropped.
    """
    mapping = check_mapping(mapping)
    names = set(series_by_mlflow_key)
    tool = detect_tool(names)
    role_of = {"hf_trainer": hf_role, "lightning": generic_role, "keras": generic_role}.get(tool or "")
    if role_of is None and not mapping:
        return dict(series_by_mlflow_key), None
    if role_of is not None:
        role_of = with_eval_sets(role_of, names)
    mapped_cols = set((mapping or {}).values())
    roles: dict[str, Role] = {}
    for name in sorted(names - mapped_cols):
        role = role_of(name) if role_of else None
        if role is not None:
            roles[name] = role
    missing = [(key, col) for key, col in (mapping or {}).items() if col not in names]
    if missing:
        key, col = missing[0]
        shown = ", ".join(printable(n, 40) for n in sorted(names)[:25])
        raise InputError(
            f"--map {key}={printable(col)}: the run has no metric '{printable(col)}' (its metrics: {shown or 'none'})"
        )
    for key, col in (mapping or {}).items():
        roles[col] = mapped_role(key)
    log = _as_log(series_by_mlflow_key, roles, epoch_indexed=tool == "keras")
    renamed = assemble(log.rows, log).series if log.rows else {}
    dropped = set(roles) | (HF_SKIP if tool == "hf_trainer" else set())
    for name, series in series_by_mlflow_key.items():
        if name not in dropped and name not in renamed:
            renamed[name] = series
    return renamed, tool


def detect_tool(names: set[str]) -> str | None:
    """Which tool's names these are: ``hf_trainer``, ``lightning``, ``keras`` or None."""
    if any(n in names for n in _HF_MARKS) or {"loss", "learning_rate", "epoch"} <= names:
        return "hf_trainer"
    lightning_like = any(
        n.endswith(("_step", "_epoch")) or n.startswith(("lr-", "train_", "val_", "valid_")) for n in names
    )
    keras_like = "loss" in names and not any(n.startswith("train_") for n in names)
    if keras_like and not any(n.endswith(("_step", "_epoch")) or n.startswith("lr-") for n in names):
        return "keras"
    if lightning_like:
        return "lightning"
    return None


def _as_log(series: dict[str, Series], roles: dict[str, Role], *, epoch_indexed: bool) -> ParsedLog:
    """One row per MLflow step holding every role metric logged at it."""
    by_step: dict[float, dict[str, float]] = {}
    for name in roles:
        s = series[name]
        for step, value in zip(s.steps.tolist(), s.values.tolist()):
            if math.isfinite(step):
                by_step.setdefault(step, {})[name] = value
    rows = []
    for step in sorted(by_step):
        values = by_step[step]
        values[_STEP] = step
        if epoch_indexed:
            values[_EPOCH] = step
        rows.append(Row(values, int(step)))
    if epoch_indexed:
        return ParsedLog("keras", rows, roles, epoch_col=_EPOCH, epoch_kind=INDEX0, runs_splittable=False)
    return ParsedLog("mlflow", rows, roles, step_col=_STEP, runs_splittable=False)
