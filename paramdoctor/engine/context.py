"""Facts about a run that rules need besides its curves: monitor, classes, pretrained start.

Each looks in ``record.meta`` first (what the source knew), then in the
paramdoctor config, then in tags, and says None when the run does not tell.
"""

from __future__ import annotations

import numpy as np

from paramdoctor import keys
from paramdoctor.record import RunRecord, Series


def monitor_of(record: RunRecord) -> tuple[str, str]:
    """The monitored metric and its mode ("min"/"max"): meta, then config, then tags, then val/loss."""
    monitor = record.meta.get("monitor") or _config_get(record, "early_stopping.monitor") or record.tags.get(keys.TAG_MONITOR)
    if not monitor or record.get(str(monitor)) is None:
        monitor = keys.VAL_LOSS if record.get(keys.VAL_LOSS) is not None else keys.VAL_ACC
    monitor = str(monitor)
    mode = "min" if monitor.endswith("loss") else "max"
    return monitor, mode


def num_classes_of(record: RunRecord) -> int | None:
    return _first_count((record.meta.get("num_classes"), record.tags.get(keys.TAG_NUM_CLASSES)), minimum=2)


def pretrained_of(record: RunRecord) -> bool | None:
    """Whether the run started from pretrained weights; None when unknown."""
    model = record.config.get("model") if isinstance(record.config, dict) else None
    if isinstance(model, dict) and "weights" in model:
        return bool(model.get("weights"))
    if "pretrained" in record.meta:
        return bool(record.meta["pretrained"])
    if isinstance(model, dict):  # a paramdoctor config without weights: trained from scratch
        return False
    return None


def early_stopping_patience(record: RunRecord) -> int | None:
    """Patience when early stopping was on; None when it was off or unknown."""
    enabled = _config_get(record, "early_stopping.enabled")
    patience = _config_get(record, "early_stopping.patience")
    if enabled is False or patience is None:
        return None
    try:
        return int(patience)
    except (TypeError, ValueError):
        return None


def optimizer_settings(record: RunRecord) -> tuple[str, float, float, float] | None:
    """(optimizer name, peak learning rate, weight decay, momentum) from the run's config; None when unknown.

    A paramdoctor config (``optimizer.*``) or a Hugging Face one (``optim``,
    ``learning_rate``, ``weight_decay``). The peak learning rate is the largest
    one the run logged (``step/lr/*``), else the largest configured one.
    """
    name = _config_get(record, "optimizer.name") or record.config.get("optim")
    lrs = [_config_get(record, "optimizer.lr"), _config_get(record, "optimizer.backbone_lr"), record.config.get("learning_rate")]
    wd = _config_get(record, "optimizer.weight_decay")
    if wd is None:
        wd = record.config.get("weight_decay")
    momentum = _config_get(record, "optimizer.momentum")
    try:
        configured = [float(v) for v in lrs if v is not None]
        wd = float(wd)  # type: ignore[arg-type]
        momentum = 0.0 if momentum is None else float(momentum)
    except (TypeError, ValueError):
        return None
    if not isinstance(name, str) or not configured:
        return None
    logged = [float(np.nanmax(s.values)) for key in record.keys_with_prefix(keys.STEP_LR_PREFIX) if (s := record.series[key]).values.size and np.isfinite(s.values).any()]
    peak = max(logged) if logged else max(configured)
    name = "adamw" if "adamw" in name.lower() else name.lower()
    return name, peak, wd, momentum


def train_samples_of(record: RunRecord) -> int | None:
    """How many samples one epoch trains on; None when the run does not tell.

    The exact count paramdoctor logs (``paramdoctor.train_samples``), else an
    upper bound from steps per epoch x batch size x accumulation (the last
    batch of an epoch may be short).
    """
    exact = _first_count((record.meta.get("train_samples"), record.tags.get(keys.TAG_TRAIN_SAMPLES)))
    if exact is not None:
        return exact
    steps = _first_count((record.meta.get("steps_per_epoch"), record.tags.get(keys.TAG_STEPS_PER_EPOCH)))
    batch = batch_size_of(record)
    accumulate = _first_count((_config_get(record, "trainer.accumulate_grad_batches"), record.config.get("gradient_accumulation_steps"))) or 1
    if steps is None or batch is None:
        return None
    return steps * batch * accumulate


def batch_size_of(record: RunRecord) -> int | None:
    """Samples per forward batch: paramdoctor's ``data.batch_size`` or Hugging Face's per-device one."""
    return _first_count((_config_get(record, "data.batch_size"), record.config.get("per_device_train_batch_size")))


def _first_count(candidates, minimum: int = 1) -> int | None:
    """The first candidate that reads as a whole number of at least ``minimum`` (booleans are not counts)."""
    for value in candidates:
        if isinstance(value, bool):
            continue
        try:
            n = int(value)
        except (TypeError, ValueError):
            continue
        if n >= minimum:
            return n
    return None


def accuracy(series: Series | None) -> Series | None:
    """An accuracy curve as a fraction: percentages (max above 1.5) are divided by 100."""
    if series is None:
        return None
    finite = series.values[np.isfinite(series.values)]
    if finite.size and float(np.max(finite)) > 1.5:
        return Series(series.steps, series.values / 100.0)
    return series


def _config_get(record: RunRecord, dotted: str):
    node = record.config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
