"""Evaluation sets: which validation curves a run has, one view of the run per set, and what is missing.

A log may evaluate on several sets (Hugging Face ``eval_<set>_loss``, paths
``eval/<set>/loss``, Lightning ``val_loss/dataloader_idx_N``). The importers
keep each under ``val/<set>/loss``, ``val/<set>/acc`` and ``val/<set>/<metric>``
and list the names in ``record.meta["eval_sets"]``. The rules read plain
``val/loss`` and ``val/acc``, so each set is judged through a *view*: the same
run with that set's curves in the plain places.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from paramdoctor import keys
from paramdoctor.record import RunRecord

VAL_PREFIX = "val/"
MIN_POINTS = 2  # fewer finite points than this is not a curve


def set_names(record: RunRecord) -> list[str]:
    """The named evaluation sets with a loss or accuracy curve, in the order the log listed them."""
    listed = [str(n) for n in record.meta.get("eval_sets") or [] if isinstance(n, str)]
    found = []
    for key in record.series:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] in ("loss", "acc") and record.get(key) is not None:
            found.append(parts[1])
    ordered = [n for n in listed if n in found] + sorted(set(found) - set(listed))
    return list(dict.fromkeys(ordered))


def views(record: RunRecord) -> list[tuple[str | None, RunRecord]]:
    """One (set name, record) per evaluation set; ``[(None, record)]`` for a run with one (or no) validation set.

    The plain set (``val/loss``, ``val/acc``), when the run has one beside named
    sets, comes first under the name None.
    """
    names = set_names(record)
    plain = record.get(keys.VAL_LOSS) is not None or record.get(keys.VAL_ACC) is not None
    if not names or (len(names) == 1 and plain):
        return [(None, record)]
    out: list[tuple[str | None, RunRecord]] = [(None, _without_sets(record))] if plain else []
    out.extend((name, view_of(record, name)) for name in names)
    return out


def view_of(record: RunRecord, name: str) -> RunRecord:
    """The run with evaluation set ``name``'s curves as its plain ``val/...`` curves (other sets left out)."""
    prefix = f"{VAL_PREFIX}{name}/"
    series = {k: s for k, s in record.series.items() if not _is_set_key(k)}
    for key in [k for k in series if k.startswith(VAL_PREFIX)]:
        del series[key]
    for key, s in record.series.items():
        if key.startswith(prefix):
            series[VAL_PREFIX + key[len(prefix) :]] = s
    meta = dict(record.meta)
    monitor = meta.get("monitor")
    if isinstance(monitor, str) and monitor.startswith(prefix):
        meta["monitor"] = VAL_PREFIX + monitor[len(prefix) :]
    meta["eval_set"] = name
    return dataclasses.replace(record, series=series, meta=meta)


def missing_validation(record: RunRecord) -> str | None:
    """None when some validation curve can be read; else one sentence saying what is missing."""
    curves = [k for k, s in record.series.items() if k.startswith(VAL_PREFIX) and _finite(s.values) >= MIN_POINTS]
    if curves:
        return None
    recorded = sorted(
        (k for k, s in record.series.items() if len(s) and not k.startswith(("telemetry/", "step/lr/", "epoch/"))),
        key=lambda k: (not k.startswith("train/"), k),
    )
    empty = sorted(k for k, s in record.series.items() if k.startswith(VAL_PREFIX) and len(s))
    if not recorded and not any(len(s) for s in record.series.values()):
        return "the run holds no curves at all (every series is missing or empty)"
    if empty:
        return (
            f"no validation curve has {MIN_POINTS} or more finite points ({', '.join(empty)}); "
            "overfitting, the best epoch and training length cannot be judged"
        )
    shown = ", ".join(recorded[:6]) + (", ..." if len(recorded) > 6 else "")
    return (
        f"no validation curve (val/loss, val/acc or another val/ metric) was logged, only {shown}; "
        "overfitting, the best epoch and training length cannot be judged"
    )


def _is_set_key(key: str) -> bool:
    parts = key.split("/")
    return len(parts) >= 3 and parts[0] == "val"


def _without_sets(record: RunRecord) -> RunRecord:
    return dataclasses.replace(record, series={k: s for k, s in record.series.items() if not _is_set_key(k)})


def _finite(values: np.ndarray) -> int:
    return int(np.isfinite(values).sum())
