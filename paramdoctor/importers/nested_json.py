"""JSON histories nested one level: the shapes training scripts dump their curves in.

* ``{"history": {"loss": [...], "val_loss": [...]}, "params": {...}}`` — a
  Keras ``History`` saved whole (``history.history`` and ``history.params``);
* ``{"epochs": [1, 2, ...], "metrics": {"loss": [...], "val_loss": [...]}}`` —
  per-epoch lists with the epoch numbers beside them;
* ``{"train": {"loss": [...]}, "val": {"loss": [...], "acc": [...]}}`` — one
  dict of lists per split (``val``, ``valid``, ``validation``, ``eval``).

A flat dict of lists is a Keras history (:mod:`paramdoctor.importers.keras`)
and a list of per-epoch dicts is read as JSON lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers.names import EVAL, Role, generic_role, val_metric_key
from paramdoctor.importers.rows import roles_for, row_from, scalar_params
from paramdoctor.importers.table import GUESS, INDEX0, ParsedLog

_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "eval": "val"}
_X_KEYS = ("epochs", "epoch", "steps", "step")


def shape(data: dict[str, Any]) -> str | None:
    """Which nested shape ``data`` has: ``history``, ``metrics``, ``splits`` or None."""
    if isinstance(data.get("history"), dict) and _lists(data["history"]):
        return "history"
    if isinstance(data.get("metrics"), dict) and _lists(data["metrics"]):
        return "metrics"
    splits = [k for k in data if k.lower() in _SPLITS]
    if splits and all(isinstance(data[k], dict) and _lists(data[k]) for k in splits):
        return "splits"
    return None


def _lists(d: dict[str, Any]) -> bool:
    return bool(d) and all(isinstance(v, list) for v in d.values())


def parse(path: Path, data: dict[str, Any], mapping: dict[str, str] | None) -> ParsedLog:
    kind = shape(data)
    x_name, x_values = None, None
    if kind == "history":
        curves, where, tool = data["history"], "history", "keras"
    elif kind == "metrics":
        curves, where, tool = data["metrics"], "metrics", "json"
        x_name = next((k for k in _X_KEYS if isinstance(data.get(k), list)), None)
        x_values = data[x_name] if x_name else None
    else:
        curves, where, tool = {}, "", "json"
        for split, values in data.items():
            prefix = _SPLITS.get(split.lower())
            if prefix and isinstance(values, dict):
                curves.update({f"{prefix}_{name}": v for name, v in values.items()})
    for name, values in curves.items():
        if not isinstance(values, list):
            raise InputError(f"{path}: {where}['{name}'] is not a list (expected per-epoch lists of numbers)")
    roles = roles_for(curves.keys(), _role, mapping, path)
    counter = "\x00x"
    length = max((len(v) for v in curves.values()), default=0)
    rows = []
    for i in range(length):
        obj: dict[str, Any] = {name: values[i] for name, values in curves.items() if i < len(values)}
        obj[counter] = x_values[i] if x_values is not None and i < len(x_values) else (i if x_values is None else None)
        rows.append(row_from(obj, roles, (counter,), i, f"entry {i}", path))
    params = scalar_params(data.get("params") or {}) if isinstance(data.get("params"), dict) else {}
    meta: dict[str, Any] = {}
    epochs = (data.get("params") or {}).get("epochs") if isinstance(data.get("params"), dict) else None
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
        meta["max_epochs"] = epochs
    by_step = x_name in ("steps", "step")
    return ParsedLog(
        tool, rows, roles, step_col=counter if by_step else None, epoch_col=None if by_step else counter,
        epoch_kind=GUESS if x_values is not None else INDEX0, params=params, meta=meta, runs_splittable=False,
    )


def _role(name: str) -> Role | None:
    role = generic_role(name)
    if role is None and name.startswith("val_") and len(name) > 4:
        return Role(val_metric_key(name[4:]), EVAL)
    return role
