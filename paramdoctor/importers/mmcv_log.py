"""The ``<timestamp>.log.json`` of mmcv 1.x's ``TextLoggerHook`` (OpenMMLab 1.x: MMDetection 2, MMClassification...).

The first line holds the run's ``env_info``, ``config``, ``seed`` and
``exp_name``; then one line per log: ``{"mode": "train", "epoch": 1, "iter":
50, "lr": ..., "loss_rpn_cls": ..., "loss": ..., "time": ...}`` every
``interval`` iterations (``iter`` counted within the epoch by
``EpochBasedRunner``, globally by ``IterBasedRunner``) and ``{"mode": "val",
"epoch": 1, ..., "bbox_mAP": ...}`` after each evaluation. ``loss`` is the sum
of the parts. Evaluation metrics keep their names (``val/bbox_mAP``;
``accuracy_top-1`` is ``val/acc``; MMDetection's ``bbox_mAP_copypaste``
string repeats them and is left out) and the first known one becomes
``meta["monitor"]`` (mode max).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError
from paramdoctor.importers.mmengine import openmmlab_meta, openmmlab_role
from paramdoctor.importers.reading import JsonLines, NotANumber, to_counter
from paramdoctor.importers.rows import roles_for, row_from, scalar_params
from paramdoctor.importers.table import INDEX1, ParsedLog

_SKIP = frozenset({"mode", "epoch", "iter", "time", "data_time", "memory", "eta", "momentum"})
_STEP = "\x00step"
_COPYPASTE = "_copypaste"  # MMDetection's "bbox_mAP_copypaste": the same numbers again, as one string


def looks_like(objects: list[tuple[int, dict[str, Any]]]) -> bool:
    return any(obj.get("mode") in ("train", "val") and "epoch" in obj and "iter" in obj for _, obj in objects[:50])


def parse(path: Path, lines: JsonLines, mapping: dict[str, str] | None) -> ParsedLog:
    logged = [(line, obj) for line, obj in lines.objects if obj.get("mode") in ("train", "val")]
    header = next((obj for _, obj in lines.objects if "mode" not in obj), {})
    train = [(line, obj) for line, obj in logged if obj["mode"] == "train"]
    epochs = {_counter(obj, "epoch", line, path) for line, obj in train or logged}  # a log of evaluations only
    by_epoch = len(epochs) > 1
    per_epoch = max((_counter(obj, "iter", line, path) or 0 for line, obj in train), default=0)
    train_names: dict[str, None] = {}
    val_names: dict[str, None] = {}
    out: list[tuple[int, dict[str, Any]]] = []
    for line, obj in logged:
        epoch = _counter(obj, "epoch", line, path)
        it = _counter(obj, "iter", line, path)
        if obj["mode"] == "train":
            values = {k: v for k, v in obj.items() if k not in _SKIP}
            train_names.update(dict.fromkeys(values))
            step = (epoch - 1) * per_epoch + it if by_epoch and epoch is not None and it is not None else it
        else:
            values = {("val/loss" if k == "loss" else k): v for k, v in obj.items() if k not in _SKIP and k != "lr"
                      and not k.endswith(_COPYPASTE)}
            val_names.update(dict.fromkeys(values))
            step = epoch * per_epoch if by_epoch and epoch is not None else it
        values[_STEP] = step
        if by_epoch:
            values["epoch"] = epoch
        out.append((line, values))

    roles = roles_for(
        list(train_names) + [n for n in val_names if n not in train_names],
        lambda name: openmmlab_role(name, train_names, val_names),
        mapping,
        path,
    )
    rows = [row_from(values, roles, (_STEP, "epoch"), line, f"line {line}", path) for line, values in out]
    meta = openmmlab_meta(roles, lines)
    params = scalar_params(header, skip=("env_info", "config"))
    return ParsedLog("mmcv", rows, roles, step_col=_STEP, epoch_col="epoch" if by_epoch else None, epoch_kind=INDEX1,
                     params=params, meta=meta)


def _counter(obj: dict[str, Any], name: str, line: int, path: Path) -> float | None:
    try:
        return to_counter(obj.get(name))
    except NotANumber as exc:
        raise InputError(f"{path}: line {line}: '{name}' is {exc}, expected a finite step or epoch number") from None
