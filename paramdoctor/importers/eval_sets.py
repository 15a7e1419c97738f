"""Several evaluation sets in one log: each set's curves under ``val/<set>/...``.

Tools name a second validation set in a few ways:

* Hugging Face ``Trainer`` with ``eval_dataset={"mnli": ..., "mnli-mm": ...}``:
  ``eval_mnli_loss``, ``eval_mnli_accuracy``, ``eval_mnli_runtime`` (and
  ``eval/mnli_loss`` once ``report_to`` rewrites the names for TensorBoard or
  W&B); a plain ``eval_loss`` is the unnamed set;
* Lightning with several validation dataloaders: ``val_loss/dataloader_idx_0``;
* hand-written paths: ``val/<set>/loss``, ``eval/<set>/accuracy``;
* hand-written names with the set first: ``real_val_loss``, ``ema_val_acc``
  (but ``best_val_loss``, ``avg_val_loss`` and the like are no set: a running
  best or an average of the plain validation curve).

Each named set's loss goes under ``val/<set>/loss``, its accuracy under
``val/<set>/acc``, any other metric under ``val/<set>/<metric>``; set names
are made key-safe with :func:`paramdoctor.keys.safe_key`.
:func:`finish_eval_sets` lists the sets in the file's order (``meta["eval_sets"]``)
and, when the log has exactly one named set and no plain one, also gives its
curves the plain ``val/loss`` / ``val/acc`` keys.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, Role
from paramdoctor.record import Series

RoleOf = Callable[[str], "Role | None"]

_SPEED = ("runtime", "samples_per_second", "steps_per_second")
_HF_PREFIXES = ("eval_", "eval/")
_PATH = re.compile(r"^(?:val|eval|valid|validation)/(?P<set>[^/]+)/(?P<metric>[^/]+)$", re.IGNORECASE)
_DATALOADER = re.compile(r"^(?P<base>.+)/(?P<set>dataloader_idx_\d+)$")
_SET_FIRST = re.compile(r"^(?P<set>[A-Za-z][A-Za-z0-9\-]*)_(?:val|valid|validation)_(?P<metric>[A-Za-z][^/]*)$")
_NOT_SETS = frozenset(
    {"best", "min", "max", "mean", "avg", "average", "last", "final", "prev", "previous", "running", "smoothed", "total",
     "epoch", "train", "training", "test", "cur", "current", "init", "initial"}
)
_VAL_BASE = re.compile(r"^(?:val|valid|validation|eval)[_/](?P<metric>[^/]+)$", re.IGNORECASE)
_SET_KEY = re.compile(r"^val/(?P<set>[^/]+)/(?P<metric>[^/]+)$")
_IDX = re.compile(r"^dataloader_idx_(\d+)$")


def with_eval_sets(role_of: RoleOf, columns: Iterable[str]) -> RoleOf:
    """``role_of`` that also knows the evaluation sets named among ``columns``."""
    names = set(columns)
    hf_sets = _hf_sets(names)

    def role(name: str) -> Role | None:
        found = set_metric(name, hf_sets)
        if found is None:
            return role_of(name)
        eval_set, metric = found
        if metric is None:
            return None  # a set's runtime or throughput
        return Role(f"val/{eval_set}/{metric}", EVAL)

    return role


def set_metric(name: str, hf_sets: Iterable[str] = ()) -> tuple[str, str | None] | None:
    """(set, metric) when ``name`` is one evaluation set's metric; metric None for its runtime and throughput."""
    text = name.strip()
    for prefix in _HF_PREFIXES:
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            for eval_set in sorted(hf_sets, key=len, reverse=True):
                if rest.startswith(eval_set + "_") and len(rest) > len(eval_set) + 1:
                    return keys.safe_key(eval_set), _metric(rest[len(eval_set) + 1 :])
    match = _DATALOADER.match(text)
    if match:
        base = _VAL_BASE.match(match.group("base"))
        return (match.group("set"), _metric(base.group("metric"))) if base else None
    match = _PATH.match(text)
    if match:
        return keys.safe_key(match.group("set")), _metric(match.group("metric"))
    match = _SET_FIRST.match(text)
    if match and match.group("set").lower() not in _NOT_SETS:
        return keys.safe_key(match.group("set")), _metric(match.group("metric"))
    return None


def _hf_sets(names: set[str]) -> set[str]:
    """Hugging Face set names: ``X`` of ``eval_X_runtime`` (always logged per set), or of ``eval_X_loss`` without a plain ``eval_loss``."""
    sets: set[str] = set()
    for prefix in _HF_PREFIXES:
        plain_loss = f"{prefix}loss" in names
        for name in names:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            for suffix in _SPEED + (() if plain_loss else ("loss",)):
                if rest.endswith("_" + suffix) and len(rest) > len(suffix) + 1:
                    candidate = rest[: -len(suffix) - 1]
                    if "/" not in candidate:
                        sets.add(candidate)
    return sets


def _metric(metric: str) -> str | None:
    lowered = metric.lower()
    if lowered in _SPEED:
        return None
    if lowered in ("loss", "losses"):
        return "loss"
    if lowered in ("acc", "accuracy", "top1", "acc1"):
        return "acc"
    return keys.safe_key(metric.replace("/", "_"))


def finish_eval_sets(series: dict[str, Series], key_order: Iterable[str]) -> list[str]:
    """The named sets present in ``series`` in file order; a lone named set also fills the plain keys.

    ``key_order`` is the series keys in the order their columns appear in the
    file. Changes ``series`` in place.
    """
    sets: list[str] = []
    for key in key_order:
        match = _SET_KEY.match(key)
        if match and key in series and len(series[key]) and match.group("set") not in sets:
            sets.append(match.group("set"))
    if sets and all(_IDX.match(s) for s in sets):
        sets.sort(key=lambda s: int(_IDX.match(s).group(1)))  # type: ignore[union-attr]
    has_plain = any(k in series and len(series[k]) for k in (keys.VAL_LOSS, keys.VAL_ACC))
    if len(sets) == 1 and not has_plain:
        for metric, plain in (("loss", keys.VAL_LOSS), ("acc", keys.VAL_ACC)):
            named = series.get(f"val/{sets[0]}/{metric}")
            if named is not None and len(named):
                series[plain] = named
    return sets
