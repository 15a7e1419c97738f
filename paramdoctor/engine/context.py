"""Facts about a run that rules need besides its curves: monitor, classes, pretrained start.

Each looks in ``record.meta`` first (what the source knew), then in the
paramdoctor config, then in tags, and says None when the run does not tell.
"""

from __future__ import annotations

import numpy as np

from paramdoctor import keys, signals
from paramdoctor.record import RunRecord, Series
from paramdoctor.signals.noise import median

# Tools whose losses are sums of components (detection, segmentation) or language-model losses:
# no chance level can be read off their first or flat loss values.
NO_CHANCE_SOURCES = ("ultralytics", "detectron2", "mmengine", "llamafactory")
# A learning rate this small moves nothing in any realistic number of steps.
TINY_LR = {"adam": 1e-6, "adamw": 1e-6, "sgd": 1e-4}
TINY_UPDATE_RATIO = 1e-4


def monitor_of(record: RunRecord) -> tuple[str, str]:
    """The monitored metric and its mode ("min"/"max").

    The run's own choice first (meta, then the paramdoctor config, then tags),
    when that curve was recorded; else what a practitioner would watch:
    val/acc, else a validation score (a val/ metric whose name says higher is
    better: f1, mAP, IoU, ...), else val/loss, else a validation error (cer,
    wer, mae, ...). The mode is the one the
    run states, else read from the metric's name (``val/cer`` is "min").
    """
    stated = record.meta.get("monitor") or _config_get(record, "early_stopping.monitor") or record.tags.get(keys.TAG_MONITOR)
    monitor = str(stated) if stated and record.get(str(stated)) is not None else None
    if monitor is None:
        others = [k for k in record.keys_with_prefix("val/") if k.count("/") == 1 and k not in (keys.VAL_ACC, keys.VAL_LOSS)]
        scores = [k for k in others if keys.metric_mode(k) == "max"]
        errors = [k for k in others if keys.metric_mode(k) == "min"]
        for key in (keys.VAL_ACC, *scores, keys.VAL_LOSS, *errors):
            if record.get(key) is not None:
                monitor = key
                break
    monitor = monitor or keys.VAL_LOSS
    mode = None
    if monitor == stated:
        mode = record.meta.get("mode") or _config_get(record, "early_stopping.mode") or record.tags.get(keys.TAG_MODE)
    if mode not in ("min", "max"):
        mode = keys.metric_mode(monitor) or ("min" if monitor.endswith("loss") else "max")
    return monitor, str(mode)


def num_classes_of(record: RunRecord) -> int | None:
    return _first_count((record.meta.get("num_classes"), record.tags.get(keys.TAG_NUM_CLASSES)), minimum=2)


def chance_level(record: RunRecord) -> "signals.ChanceLevel | None":
    """The run's chance level: from its class count when known, else inferred from its curves (see ``infer_chance``)."""
    pairs = []
    for name, acc_key, loss_key in (("train", keys.TRAIN_ACC, keys.TRAIN_LOSS), ("val", keys.VAL_ACC, keys.VAL_LOSS)):
        acc, loss = accuracy(record.get(acc_key)), record.get(loss_key)
        if acc is not None and loss is not None:
            pairs.append((name, acc.values, loss.values))
    # a detection or language-model loss has no chance level, unless the run also logs a classifier's accuracy
    guess = record.source not in NO_CHANCE_SOURCES or bool(pairs)
    loss = record.get(keys.TRAIN_LOSS) or record.get(keys.STEP_LOSS)
    return signals.infer_chance(
        num_classes=num_classes_of(record),
        pairs=tuple(pairs),
        flat_loss=loss.values if guess and loss is not None else None,
        first_loss=start_loss(record) if guess else None,
        has_accuracy=bool(pairs) or record.get(keys.TRAIN_ACC) is not None or record.get(keys.VAL_ACC) is not None,
    )


def start_loss(record: RunRecord) -> float | None:
    """The loss before any learning: the median of the first five step losses, else the first train/loss."""
    for key in (keys.STEP_LOSS, keys.TRAIN_LOSS):
        s = record.get(key)
        if s is None:
            continue
        first = s.values[np.isfinite(s.values)][: 5 if key == keys.STEP_LOSS else 1]
        if first.size:
            return float(median(first))
    return None


def lr_curve(record: RunRecord) -> tuple[str, Series] | None:
    """The logged learning rate of the group with the largest peak: per step when logged so, else per epoch."""
    for prefix in (keys.STEP_LR_PREFIX, keys.EPOCH_LR_PREFIX):
        best: tuple[float, str] | None = None
        for key in record.keys_with_prefix(prefix):
            values = record.series[key].values
            finite = values[np.isfinite(values)]
            if finite.size >= 3 and float(np.max(finite)) > 0 and (best is None or float(np.max(finite)) > best[0]):
                best = (float(np.max(finite)), key)
        if best is not None:
            return best[1], record.series[best[1]]
    return None


def peak_lr(record: RunRecord) -> float | None:
    """The largest learning rate the run logged, else the largest it was configured with."""
    logged = lr_curve(record)
    if logged is not None:
        return float(np.nanmax(logged[1].values))
    configured = []
    for value in (_config_get(record, "optimizer.lr"), record.config.get("learning_rate"), record.config.get("lr"), record.config.get("lr0")):
        try:
            if value is not None and not isinstance(value, bool):
                configured.append(float(value))
        except (TypeError, ValueError):
            continue
    return max(configured) if configured else None


def optimizer_name(record: RunRecord) -> str | None:
    name = _config_get(record, "optimizer.name") or record.config.get("optim") or record.config.get("optimizer")
    if not isinstance(name, str):
        return None
    lowered = name.lower()
    for known in ("adamw", "adam", "sgd"):
        if known in lowered:
            return known
    return None


def lr_evidence(record: RunRecord, update_ratio: float | None) -> tuple[bool | None, str]:
    """Whether something says the learning rate itself is too small, and what: (None, "") when nothing can tell.

    Tiny weight updates (the largest group median update/weight ratio at
    1e-4 or below), or a peak learning rate tiny for its optimizer (Adam and
    AdamW at 1e-6 or below, SGD at 1e-4 or below; 1e-6 when the optimizer is
    unknown).
    """
    told = False
    if update_ratio is not None:
        if update_ratio <= TINY_UPDATE_RATIO:
            return True, f"the largest median update/weight ratio of any layer group is {update_ratio:.1e} per step"
        told = True
    lr = peak_lr(record)
    if lr is not None and lr > 0:
        name = optimizer_name(record)
        limit = TINY_LR.get(name or "adam", 1e-6)
        if lr <= limit:
            return True, f"the peak learning rate is {lr:.2g}" + (f" ({name})" if name else "")
        told = True
    return (False, "") if told else (None, "")


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


def steps_per_epoch_of(record: RunRecord) -> int | None:
    return _first_count((record.meta.get("steps_per_epoch"), record.tags.get(keys.TAG_STEPS_PER_EPOCH)))


def max_epochs_of(record: RunRecord) -> float | None:
    """The epochs the run was configured for: paramdoctor's trainer.max_epochs, else what the log says."""
    for value in (_config_get(record, "trainer.max_epochs"), record.meta.get("max_epochs"), record.config.get("num_train_epochs")):
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number > 0:
            return number
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
    logged = [
        float(np.nanmax(s.values))
        for key in record.keys_with_prefix(keys.STEP_LR_PREFIX)
        if (s := record.series[key]).values.size and np.isfinite(s.values).any()
    ]
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
