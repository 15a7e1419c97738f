"""JSON histories: the dicts of per-epoch lists training scripts dump their curves in.

* ``{"history": {"loss": [...], "val_loss": [...]}, "params": {...}}`` — a
  Keras ``History`` saved whole (``history.history`` and ``history.params``);
* ``{"epochs": [1, 2, ...], "metrics": {"loss": [...], "val_loss": [...]}}`` —
  per-epoch lists with the epoch numbers beside them;
* ``{"train": {"loss": [...]}, "val": {"loss": [...], "acc": [...]}}`` — one
  dict of lists per split (``val``, ``valid``, ``validation``, ``eval``);
* flat: ``{"config": {...}, "epochs": [1, ..., 30], "train_loss": [...],
  "val_wer": [...], "test_loss": 0.18}`` — a dict whose values are mostly
  numeric lists of one length, with perhaps a few scalars, strings or a
  settings dict beside them. ``{"train_losses": [...], "val_losses": [...]}``
  and ``{"train": [...], "val": [...]}`` are flat too.

The x list (``epochs``, ``epoch``, ``steps``, ``step``, ``iterations``...)
gives each entry's position; without one, entry *i* is epoch *i + 1*. Lists
are curves by their names (:func:`~paramdoctor.importers.names.table_role`,
bare ``train``/``val`` for the losses); a curve with more entries than the x
list is an error. Top-level scalars and strings (final test scores, timings)
are params, never curves; a settings dict (``config``, ``args``, ``hparams``,
``hyperparameters``, Keras's ``params``) is the run's config and params.

A dict of lists holding Keras's ``loss`` is a Keras history
(:mod:`paramdoctor.importers.keras`) and a list of per-epoch dicts is read as
JSON lines.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers import keras
from paramdoctor.importers.names import table_role, with_bare_splits, with_train_twins
from paramdoctor.importers.reading import printable
from paramdoctor.importers.rows import roles_for, row_from, scalar_params, without_worded_guesses
from paramdoctor.importers.table import GUESS, INDEX0, ParsedLog

_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "eval": "val"}
_EPOCH_X = ("epochs", "epoch")
_STEP_X = ("steps", "step", "global_steps", "global_step", "iterations", "iteration", "iters", "iter")
_SETTINGS = ("config", "args", "hparams", "hyperparameters", "params", "settings")
_MAX_EPOCHS = ("epochs", "num_epochs", "max_epochs", "n_epochs", "num_train_epochs")
_COUNTER = "\x00x"


def shape(data: dict[str, Any]) -> str | None:
    """Which shape ``data`` has: ``history``, ``metrics``, ``splits``, ``flat`` or None."""
    if isinstance(data.get("history"), dict) and _lists(data["history"]):
        return "history"
    if isinstance(data.get("metrics"), dict) and _lists(data["metrics"]):
        return "metrics"
    splits = [k for k in data if k.lower() in _SPLITS]
    if splits and all(isinstance(data[k], dict) and _lists(data[k]) for k in splits):
        return "splits"
    if _flat(data):
        return "flat"
    return None


def _lists(d: dict[str, Any]) -> bool:
    return bool(d) and all(isinstance(v, list) for v in d.values())


def _flat(data: dict[str, Any]) -> bool:
    """Lists only (beside settings dicts), or more than half the values numeric lists of one length."""
    values = [v for v in data.values() if not isinstance(v, dict)]
    lists = [v for v in values if isinstance(v, list)]
    if not lists:
        return False
    if len(lists) == len(values):
        return True
    numeric = [v for v in lists if v and all(_is_number(x) for x in v)]
    if not numeric:
        return False
    length = Counter(len(v) for v in numeric).most_common(1)[0][0]
    return 2 * sum(len(v) == length for v in numeric) > len(values)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def parse(path: Path, data: dict[str, Any], mapping: dict[str, str] | None) -> ParsedLog:
    kind = shape(data)
    x_name: str | None = None
    if kind == "history":
        curves, tool = data["history"], "keras"
    elif kind == "metrics":
        curves, tool = data["metrics"], "json"
        x_name = _x_list(data)
    elif kind == "splits":
        curves, tool = {}, "json"
        for split, values in data.items():
            prefix = _SPLITS.get(split.lower())
            if prefix and isinstance(values, dict):
                curves.update({f"{prefix}_{name}": v for name, v in values.items()})
    else:
        x_name = _x_list(data)
        curves = {name: v for name, v in data.items() if isinstance(v, list) and name != x_name}
        tool = "json"
    where = {"history": "history", "metrics": "metrics"}.get(kind or "", "")
    for name, values in curves.items():
        if not isinstance(values, list):
            raise InputError(f"{path}: {where}['{printable(name)}'] is not a list (expected per-epoch lists of numbers)")
    if kind == "history":
        role_of = keras.role_function(curves)
    else:
        role_of = with_bare_splits(with_train_twins(table_role, curves), curves, mapping)
    roles = roles_for(curves.keys(), role_of, mapping, path)
    x_values: list[Any] | None = data[x_name] if x_name else None
    if x_values is not None:
        for name in roles:
            if not roles[name].guessed and len(curves[name]) > len(x_values):
                raise InputError(
                    f"{path}: '{printable(name)}' has {len(curves[name])} entries but '{x_name}' has only {len(x_values)} "
                    "(each entry needs its position)"
                )
        length = len(x_values)
    else:
        length = max((len(curves[name]) for name in roles), default=0)
    counter = x_name or _COUNTER  # never a curve's name: the x list is not among the curves
    objects = []
    for i in range(length):
        obj: dict[str, Any] = {name: values[i] for name, values in curves.items() if i < len(values)}
        obj[counter] = x_values[i] if x_values is not None else i
        objects.append((i, obj))
    roles = without_worded_guesses(roles, objects)
    rows = [row_from(obj, roles, (counter,), i, f"entry {i}", path) for i, obj in objects]
    settings_key = next((k for k in _SETTINGS if isinstance(data.get(k), dict)), None)
    settings: dict[str, Any] = data[settings_key] if settings_key else {}
    keras_params = kind == "history" and settings_key == "params"  # verbose, epochs, steps: not a configuration
    params = _dotted_params(settings)
    if kind == "flat":
        params.update(scalar_params({k: v for k, v in data.items() if k != x_name}))
    meta: dict[str, Any] = {}
    epochs = next((settings[k] for k in _MAX_EPOCHS if k in settings), None)
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
        meta["max_epochs"] = epochs
    by_step = x_name is not None and x_name.strip().lower() in _STEP_X
    return ParsedLog(
        tool, rows, roles, step_col=counter if by_step else None, epoch_col=None if by_step else counter,
        epoch_kind=GUESS if x_values is not None else INDEX0, params=params,
        config={} if keras_params else dict(settings), meta=meta,
        runs_splittable=False, columns=[name for name in curves if name.strip()],
    )


def _x_list(data: dict[str, Any]) -> str | None:
    """The key of the list of x positions: ``epochs``/``epoch`` first, then ``steps``/``iterations``..."""
    by_lower = {k.strip().lower(): k for k in data if isinstance(data[k], list)}
    return next((by_lower[name] for name in _EPOCH_X + _STEP_X if name in by_lower), None)


def _dotted_params(settings: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, str]:
    """The settings' scalars as params; nested settings under dotted names (``optimizer.lr``), three levels deep."""
    params = scalar_params({f"{prefix}{k}": v for k, v in settings.items()})
    if depth < 2:
        for key, value in settings.items():
            if isinstance(value, dict):
                params.update(_dotted_params(value, f"{prefix}{key}.", depth + 1))
    return params
