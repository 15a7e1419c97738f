"""MMEngine's ``vis_data/scalars.json`` (OpenMMLab 2.x: MMDetection 3, MMPretrain, MMSegmentation 1...).

``LocalVisBackend.add_scalars`` writes one JSON object per line into
``<work_dir>/<timestamp>/vis_data/scalars.json``. Training lines come every
``LoggerHook.interval`` iterations: ``lr``, ``loss`` (the sum the optimizer
saw) and its parts (``loss_cls``, ``loss_bbox``...), ``grad_norm`` when
gradients are clipped, ``time``, ``data_time``, ``memory``, ``iter`` (global,
1-based; some versions leave it out), ``epoch`` (1-based, epoch-based loops
only) and ``step`` (= ``iter``).
Validation lines hold the evaluator's metrics (``accuracy/top1`` in percent,
``coco/bbox_mAP``, ``mIoU``...) and ``step``: the epoch just finished when
``LoggerHook.log_metric_by_epoch`` (the default; training lines then carry
``epoch``), else the iteration. The metric a tool selects checkpoints by
becomes ``meta["monitor"]`` (mode max).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.importers.names import EVAL, LR, STEP, Role, lr_role, primary_metric, val_metric_key
from paramdoctor.importers.reading import JsonLines
from paramdoctor.importers.rows import loss_sum, roles_for, row_from
from paramdoctor.importers.table import INDEX1, ParsedLog

TRAIN_MARKS = frozenset({"iter", "step", "data_time", "time"})
_SKIP = frozenset({"step", "time", "data_time", "memory", "eta", "base_lr", "momentum", "iter", "epoch"})
_SUM = "loss (sum)"


def looks_like(objects: list[tuple[int, dict[str, Any]]]) -> bool:
    """Training lines as MMEngine's LoggerHook writes them (``iter``, ``step``, ``time``, ``data_time``), no ``mode`` key."""
    return any(TRAIN_MARKS <= _with_iter(obj).keys() and "mode" not in obj for _, obj in objects[:50])


def _with_iter(obj: dict[str, Any]) -> dict[str, Any]:
    """A training line of an MMEngine that wrote no ``iter`` (only ``step``, which is the iteration) given one.

    Training lines carry the learning rate; validation lines never do.
    """
    if "iter" in obj or "step" not in obj or not any(lr_role(k) for k in obj):
        return obj
    return {**obj, "iter": obj["step"]}


def openmmlab_role(name: str, train_names, val_names) -> Role | None:
    """The role of a name in an OpenMMLab log (MMEngine ``scalars.json``, mmcv ``*.log.json``).

    A name only validation lines carry is a validation metric; the summed
    ``loss`` and ``grad_norm`` of training lines are per step; any learning
    rate name is one.
    """
    if name in val_names and name not in train_names:
        return Role(keys.VAL_LOSS, EVAL) if name == "val/loss" else Role(val_metric_key(name), EVAL)
    if name == "loss":
        return Role(keys.STEP_LOSS, STEP)
    if name == "grad_norm":
        return Role(keys.STEP_GRAD_NORM, STEP)
    role = lr_role(name)
    return Role(LR, STEP, role.lr_group) if role is not None else None


def openmmlab_meta(roles: dict[str, Role], lines: JsonLines) -> dict[str, Any]:
    """What an OpenMMLab log says beside its curves: its selection metric (higher is better) and a cut-short last line."""
    meta: dict[str, Any] = {}
    monitor = primary_metric(role.key for role in roles.values())
    if monitor:
        meta.update(monitor=monitor, mode="max")
    if lines.truncated_last_line:
        meta["truncated_last_line"] = True
    return meta


def parse(path: Path, lines: JsonLines, mapping: dict[str, str] | None) -> ParsedLog:
    objects = [(line, _with_iter(obj)) for line, obj in lines.objects]
    by_epoch = any("iter" in obj and "epoch" in obj for _, obj in objects)
    train_names: dict[str, None] = {}
    val_names: dict[str, None] = {}
    out: list[tuple[int, dict[str, Any]]] = []
    last_iter: Any = None
    for line, obj in objects:
        if "iter" in obj:  # a training line
            last_iter = obj.get("iter")
            train_names.update(dict.fromkeys(obj))
            out.append((line, dict(obj)))
            continue
        values = {("val/loss" if k == "loss" else k): v for k, v in obj.items() if k not in _SKIP and k != "lr"}
        val_names.update(dict.fromkeys(values))
        if by_epoch:
            values["epoch"] = obj.get("step")
            if last_iter is not None:
                values["iter"] = last_iter
        else:
            values["iter"] = obj.get("step")
        out.append((line, values))
    parts = [n for n in train_names if n.startswith("loss_")] if "loss" not in train_names else []
    mapped = set((mapping or {}).values())

    def role_of(name: str) -> Role | None:
        if name in _SKIP or (name.startswith("loss_") and name not in val_names):
            return None
        return openmmlab_role(name, train_names, val_names)

    roles = roles_for(list(train_names) + list(val_names), role_of, mapping, path)
    if parts and keys.STEP_LOSS not in (mapping or {}) and not mapped & set(parts):
        roles[_SUM] = Role(keys.STEP_LOSS, STEP)
    rows = []
    for line, values in out:
        total = loss_sum(values, parts, line, path) if parts else None
        if total is not None:
            values[_SUM] = total
        rows.append(row_from(values, roles, ("iter", "epoch"), line, f"line {line}", path))
    meta = openmmlab_meta(roles, lines)
    return ParsedLog("mmengine", rows, roles, step_col="iter", epoch_col="epoch" if by_epoch else None, epoch_kind=INDEX1, meta=meta)
