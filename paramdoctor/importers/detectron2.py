"""Detectron2's ``metrics.json`` (``cfg.OUTPUT_DIR/metrics.json``, written by ``JSONWriter``).

Every ``PeriodicWriter`` period (20 iterations) one line per iteration with
new scalars, keys sorted: ``total_loss`` (the sum of the ``loss_*`` parts,
median over the last 20 iterations), the parts, ``lr``, ``time``,
``data_time``, ``eta_seconds``, the model's own counters
(``fast_rcnn/cls_accuracy``...) and ``iteration`` (0-based: the line of
iteration 19 is written after 20 optimizer steps). ``EvalHook`` adds
``bbox/AP``, ``bbox/AP50``... (``segm/``, ``keypoints/``, ``sem_seg/mIoU``,
``panoptic_seg/PQ``; ``<dataset>/bbox/AP`` for several test sets) to the line
of the iteration it ran after; the last evaluation runs after training and
gets a line of its own at ``iteration == max_iter``. Steps here count
optimizer steps done (``iteration + 1``, and ``max_iter`` for that last line).
``bbox/AP`` becomes ``val/bbox_AP`` and ``meta["monitor"]`` (mode max);
per-class APs (``bbox/AP-person``) are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers.names import EVAL, LR, STEP, Role, primary_metric, val_metric_key
from paramdoctor.importers.reading import JsonLines, NotANumber, to_counter
from paramdoctor.importers.rows import loss_sum, roles_for, row_from
from paramdoctor.importers.table import ParsedLog

_STEP = "\x00step"
_SUM = "loss (sum)"
_FAMILIES = "bbox|segm|keypoints|sem_seg|panoptic_seg|classification"
_EVAL = re.compile(rf"^(?:(?P<set>[^/]+)/)?(?P<family>{_FAMILIES})/(?P<metric>[A-Za-z0-9_]+)$")
_TRAIN_KEYS = ("total_loss", "lr", "time", "data_time")


def looks_like(objects: list[tuple[int, dict[str, Any]]]) -> bool:
    for _, obj in objects[:50]:
        if "iteration" in obj and ("total_loss" in obj or any(k.startswith("loss_") for k in obj) or any(_EVAL.match(k) for k in obj)):
            return True
    return False


def parse(path: Path, lines: JsonLines, mapping: dict[str, str] | None) -> ParsedLog:
    names = list(dict.fromkeys(k for _, obj in lines.objects for k in obj))
    parts = [] if "total_loss" in names else [n for n in names if n.startswith("loss_")]
    roles = roles_for(names, _role, mapping, path)
    if parts and keys.STEP_LOSS not in (mapping or {}):
        roles[_SUM] = Role(keys.STEP_LOSS, STEP)
    rows = []
    last_train: float | None = None
    for line, obj in lines.objects:
        values = dict(obj)
        try:
            iteration = to_counter(obj.get("iteration"))
        except NotANumber as exc:
            raise InputError(f"{path}: line {line}: 'iteration' is {exc}, expected a finite step or epoch number") from None
        trains = any(k in obj for k in _TRAIN_KEYS) or any(k in obj for k in parts)
        if iteration is not None:
            after_training = not trains and last_train is not None and iteration == last_train + 1
            values[_STEP] = iteration if after_training else iteration + 1
            if trains:
                last_train = iteration
        total = loss_sum(obj, parts, line, path) if parts else None
        if total is not None:
            values[_SUM] = total
        values.pop("iteration", None)
        rows.append(row_from(values, roles, (_STEP,), line, f"line {line}", path))
    meta: dict[str, Any] = {}
    monitor = primary_metric(role.key for role in roles.values())
    if monitor is None:
        sets = [r.key for r in roles.values() if r.key.startswith("val/") and r.key.count("/") == 2]
        monitor = next((k for k in sets if k.endswith(("/bbox_AP", "/segm_AP", "/sem_seg_mIoU"))), None)
    if monitor:
        meta.update(monitor=monitor, mode="max")
    if lines.truncated_last_line:
        meta["truncated_last_line"] = True
    return ParsedLog("detectron2", rows, roles, step_col=_STEP, meta=meta)


def _role(name: str) -> Role | None:
    if name == "total_loss":
        return Role(keys.STEP_LOSS, STEP)
    if name == "lr":
        return Role(LR, STEP)
    match = _EVAL.match(name)
    if not match:
        return None
    metric = f"{match.group('family')}_{match.group('metric')}"
    if match.group("set"):
        return Role(f"val/{keys.safe_key(match.group('set'))}/{metric}", EVAL)
    return Role(val_metric_key(metric), EVAL)
