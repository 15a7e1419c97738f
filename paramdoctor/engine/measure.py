"""The fixed registry of signals a rule may name, and how each reads a run record.

A rule file names a signal (``signal: divergence_onset``); this registry maps
that name to Python that measures it. Rule files cannot reach any other code.
Each entry declares the fields its measurement has, so the loader can check a
rule's conditions and evidence template before any run is read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from paramdoctor import keys, signals
from paramdoctor.engine import context
from paramdoctor.engine.memo import RecordMemo
from paramdoctor.signals.noise import median
from paramdoctor.record import RunRecord, Series


@dataclass(frozen=True)
class Measurement:
    """What a signal measured: named values, the unit its x positions are in, and an onset."""

    values: dict[str, Any]
    unit: str
    onset: float | None = None


@dataclass(frozen=True)
class Unavailable:
    """The signal could not be measured on this run, and why (becomes a Skipped)."""

    reason: str


@dataclass(frozen=True)
class Request:
    """One measurement request: the run, the rule's resolved parameters, its chosen input series.

    ``memo`` holds what this diagnosis already derived from ``record``
    (:class:`paramdoctor.engine.memo.RecordMemo`); a fresh one when not given.
    """

    record: RunRecord
    params: Mapping[str, Any]
    series: str | None
    memo: RecordMemo | None = None

    def __post_init__(self) -> None:
        if self.memo is None:
            object.__setattr__(self, "memo", RecordMemo(self.record))
        else:
            self.memo.belongs_to(self.record)


@dataclass(frozen=True)
class SignalSpec:
    name: str
    summary: str
    fields: tuple[str, ...]
    measure: Callable[[Request], Measurement | Unavailable]
    needs: tuple[str, ...] = ()  # series the measurement always reads (``*`` matches a layer group)
    inputs: tuple[str, ...] = ()  # series a rule may pick with ``series:``; empty = fixed inputs
    reads: dict[str, Any] = field(default_factory=dict)  # rule params the measurement itself uses, with defaults


def _fields(result_type: type, *extra: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(result_type)) + extra


def _unit(record: RunRecord, key: str) -> str:
    return "step" if key.startswith("step/") or key.startswith(keys.TELEMETRY_PREFIX) else record.x_unit


def _values(result: Any, **extra: Any) -> dict[str, Any]:
    """A signal result's fields (flat scalars: no deep copy needed, unlike ``dataclasses.asdict``) plus ``extra``."""
    values = {name: getattr(result, name) for name in _field_names(type(result))}
    values.update(extra)
    return values


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(result_type: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(result_type)
    if names is None:
        names = _FIELD_NAMES[result_type] = tuple(f.name for f in dataclasses.fields(result_type))
    return names


def _param(req: Request, name: str, default: Any) -> Any:
    return req.params.get(name, default)


# --- what several signals derive from the run: once per record (``req.memo``) ---------------


def _telemetry(req: Request, field_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    def curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for key in req.record.keys_with_prefix(keys.TELEMETRY_PREFIX):
            parsed = keys.parse_telemetry(key)
            if parsed and parsed[1] == field_name:
                s = req.record.series[key]
                out[parsed[0]] = (s.steps, s.values)
        return out

    return req.memo.once(("telemetry", field_name), curves)


def _band(req: Request) -> "signals.UpdateBand | None":
    """Median update/weight ratio per layer group (None without update telemetry)."""
    return req.memo.once(("update_band",), lambda: signals.update_ratio_band(_telemetry(req, keys.TELEMETRY_UPDATE_RATIO)))


def _chance(req: Request) -> "signals.ChanceLevel | None":
    return req.memo.once(("chance",), lambda: context.chance_level(req.record))


def _monitor(req: Request) -> tuple[str, str]:
    return req.memo.monitor()


def _start_loss(req: Request) -> float | None:
    return req.memo.once(("start_loss",), lambda: context.start_loss(req.record))


def _accuracy(req: Request, key: str) -> Series | None:
    """The curve under ``key`` as a fraction (:func:`context.accuracy`); None when not recorded."""
    return req.memo.once(("accuracy", key), lambda: context.accuracy(req.record.get(key)))


def _lr_curve(req: Request) -> tuple[str, Series] | None:
    return req.memo.once(("lr_curve",), lambda: context.lr_curve(req.record))


def _lr_evidence(req: Request, update_ratio: float | None) -> tuple[bool | None, str]:
    return req.memo.once(("lr_evidence", update_ratio), lambda: context.lr_evidence(req.record, update_ratio))


def _train_progress(req: Request, *, num_classes: bool = False, train_acc: bool = False) -> "signals.Progress | None":
    """:func:`signals.progress` of train/loss from the run's start loss, with its chance level and train/acc when asked."""

    def compute() -> "signals.Progress | None":
        loss = req.record.series[keys.TRAIN_LOSS]
        chance = _chance(req) if num_classes else None
        acc = _accuracy(req, keys.TRAIN_ACC) if train_acc else None
        return signals.progress(
            loss.steps,
            loss.values,
            start=_start_loss(req),
            num_classes=None if chance is None else chance.num_classes,
            train_acc=None if acc is None else acc.values,
            smoother=req.memo.smooth,
        )

    return req.memo.once(("progress", num_classes, train_acc), compute)


def _blow_up_cut(req: Request) -> dict[str, Any]:
    """``lr_factor`` for a run that blew up, from the update ratio of its first steps, and that ratio."""
    early = req.memo.once(("early_update_ratio",), lambda: signals.early_update_ratio(_telemetry(req, keys.TELEMETRY_UPDATE_RATIO)))
    ratio = None if early is None else early[1]
    factor = signals.lr_cut(ratio, target=float(_param(req, "target_update_ratio", 1e-2)))
    return {"lr_factor": factor, "early_update_ratio": ratio}


def _too_short(what: str) -> Unavailable:
    return Unavailable(f"too few finite points in {what} to judge")


# --- the measurements ------------------------------------------------------------


def _nonfinite(req: Request) -> Measurement | Unavailable:
    record = req.record
    checked = [k for k in (keys.STEP_LOSS, keys.TRAIN_LOSS, keys.VAL_LOSS) if record.get(k) is not None]
    for key in checked:
        s = record.series[key]
        hit = signals.first_nonfinite(s.steps, s.values)
        if hit is not None:
            unit = _unit(record, key)
            return Measurement(_values(hit, found=True, series=key, onset=hit.x, **_blow_up_cut(req)), unit, hit.x)
    if record.meta.get("stop_reason") == "nonfinite_loss" and checked:
        s = record.series[checked[0]]
        last_x = float(s.steps[-1])
        values = dict(index=len(s), x=last_x, kind="non-finite", count=1, last_finite=float(s.values[-1]))
        values.update(found=True, series=checked[0], onset=last_x, **_blow_up_cut(req))
        return Measurement(values, _unit(record, checked[0]), last_x)
    if not checked:
        return Unavailable("no loss curve (step/loss, train/loss or val/loss) was recorded")
    empty = dict(index=None, x=None, kind=None, count=0, last_finite=None, found=False, series=None, onset=None)
    empty.update(lr_factor=None, early_update_ratio=None)
    return Measurement(empty, record.x_unit)


def _explosion(req: Request) -> Measurement | Unavailable:
    s = req.record.series[req.series]
    half = 5 if req.series == keys.STEP_LOSS else 1
    res = signals.explosion(
        s.steps, s.values, factor=float(_param(req, "min_growth", 10.0)), half_width=half, rolling=req.memo.rolling_median
    )
    if res is None:
        return _too_short(req.series)
    finite = s.values[np.isfinite(s.values)]
    start = float(median(finite[:5]))
    first = float(finite[0]) if req.series != keys.STEP_LOSS else start
    peak_vs_start = res.peak / start if start > 0 else None
    values = _values(
        res,
        series=req.series,
        peak_vs_start=peak_vs_start,
        peak_vs_first=res.peak / first if first > 0 else None,
        rise_vs_first=(res.peak - res.floor) / first if first > 0 else None,
        held_fraction=res.held / max(int(np.isfinite(s.values).sum()), 1),
        first=first,
        **_blow_up_cut(req),
    )
    return Measurement(values, _unit(req.record, req.series), res.onset)


def _spikes(req: Request) -> Measurement | Unavailable:
    s = req.record.series[req.series]
    res = signals.spikes(
        s.steps,
        s.values,
        fraction=float(_param(req, "early_fraction", 0.3)),
        z=float(_param(req, "z", 6.0)),
        min_ratio=float(_param(req, "min_ratio", 1.5)),
    )
    if res is None:
        return _too_short(f"the early part of {req.series}")
    return Measurement(_values(res, series=req.series), _unit(req.record, req.series), res.onset)


def _oscillation(req: Request) -> Measurement | Unavailable:
    s = req.record.series[req.series]
    if req.series == keys.TRAIN_LOSS and _same_as_step_loss(req):
        return Unavailable("train/loss here is the per-step loss (the log has no evaluations): its noise is PD105's to judge")
    improving = 1 if req.series.endswith("acc") else -1
    if improving > 0:
        s = _accuracy(req, req.series) or s
    res = signals.oscillation(s.steps, s.values, improving=improving)
    if res is None:
        return _too_short(req.series)
    spikes = _spikes_of(req, req.series, 3.0) if improving < 0 else None
    spiky = spikes is not None and (spikes.count >= 2 or spikes.max_ratio >= 8.0)
    points = int(np.isfinite(s.values).sum())
    band = _band(req)
    told, _ = _lr_evidence(req, None if band is None else band.highest)
    values = _values(
        res,
        series=req.series,
        spiky=spiky,
        swing_rate=res.held / points if points else 0.0,
        lr_tiny=told,
        **_batch_growth(req),
    )
    return Measurement(values, _unit(req.record, req.series), res.onset)


def _same_as_step_loss(req: Request) -> bool:
    """Whether train/loss is in effect single mini-batch losses: the per-step loss itself, or means of under 3 of them."""

    def compute() -> bool:
        record = req.record
        train, step = record.get(keys.TRAIN_LOSS), record.get(keys.STEP_LOSS)
        if train is None or step is None:
            return False
        if train.values.size == step.values.size and bool(np.array_equal(train.values, step.values, equal_nan=True)):
            return True
        return step.values.size < 3 * train.values.size and record.source != "paramdoctor"

    return req.memo.once(("same_as_step_loss",), compute)


def _isolated_spikes(req: Request) -> Measurement | Unavailable:
    """Isolated spikes on the epoch-level losses: the series with the most (then the worst) spikes."""
    record = req.record
    ratio = float(_param(req, "min_ratio", 3.0))
    best = None
    for key in (keys.VAL_LOSS, keys.TRAIN_LOSS):
        s = record.get(key)
        if s is None or (key == keys.TRAIN_LOSS and _same_as_step_loss(req)):
            continue  # a train/loss made of single mini-batch losses spikes with every hard batch
        res = _spikes_of(req, key, ratio)
        if res is not None and (best is None or (res.count, res.max_ratio) > (best[1].count, best[1].max_ratio)):
            best = (key, res)
    if best is None:
        return Unavailable("needs train/loss or val/loss with at least 5 positive points")
    key, res = best
    spiky = res.count >= int(_param(req, "min_spikes", 2)) or res.max_ratio >= float(_param(req, "single_ratio", 8.0))
    return Measurement(_values(res, series=key, spiky=spiky), _unit(record, key), res.onset)


def _spikes_of(req: Request, key: str, ratio: float) -> "signals.IsolatedSpikes | None":
    """:func:`signals.isolated_spikes` of the curve under ``key`` (as recorded) at ``ratio``, once per diagnosis."""
    s = req.record.series[key]
    return req.memo.once(("isolated_spikes", key, ratio), lambda: signals.isolated_spikes(s.steps, s.values, ratio=ratio))


def _batch_growth(req: Request) -> dict[str, Any]:
    """How much larger the batch can grow (``batch_growth``) and the square-root LR scale that goes with it.

    At most ``batch_growth`` (8x) and ``max_batch``, and never past the
    training split: 16 -> 50 on 50 samples is 3.1x, so the LR scales by
    sqrt(3.1), not sqrt(8).
    """
    wanted = float(_param(req, "batch_growth", 8.0))
    samples = context.train_samples_of(req.record)
    batch = context.batch_size_of(req.record)
    growth = wanted
    if batch is not None:
        limit = float(_param(req, "max_batch", 256))
        if samples is not None:
            limit = min(limit, float(samples))
        growth = min(wanted, max(limit / batch, 1.0))
    growth = float(f"{growth:.3g}")
    return {"train_samples": samples, "batch_growth": growth, "lr_scale": float(f"{math.sqrt(growth):.3g}")}


def _progress(req: Request) -> Measurement | Unavailable:
    record = req.record
    loss = record.series[keys.TRAIN_LOSS]
    acc = _accuracy(req, keys.TRAIN_ACC)
    res = _train_progress(req, num_classes=True, train_acc=True)
    window = int(_param(req, "window", 5))
    min_gain = float(_param(req, "min_gain", 0.02))
    # "has training stopped improving?": on the training accuracy when logged (what a poor fit is about), else the loss
    if acc is not None and int(np.isfinite(acc.values).sum()) >= window:
        flat = signals.plateau(acc.steps, acc.values, improving=1, window=window, min_gain=min_gain)
    else:
        flat = signals.plateau(loss.steps, loss.values, improving=-1, window=window, min_gain=min_gain)
    if res is None or flat is None:
        return _too_short(keys.TRAIN_LOSS)
    band = _band(req)
    update_ratio = None if band is None else band.highest
    told, told_text = _lr_evidence(req, update_ratio)
    schedule = _schedule(req)
    # how much larger the steps must be: the factor that brings the largest group's update ratio to ~1e-3
    # (10x to 1000x), 100x when no telemetry says
    boost = 100.0 if not update_ratio else float(f"{min(1000.0, max(10.0, 1e-3 / update_ratio)):.2g}")
    values = _values(
        res,
        update_ratio=update_ratio,
        lr_boost=boost,
        lr_evidence=told,
        lr_evidence_text=told_text or "nothing in the run says the learning rate is too small",
        # a warmup still running in a log that stopped before its planned end is no verdict on the warmup (PD207)
        warmup_running=None if schedule is None else bool(schedule.warmup_running and _complete(record) is not False),
        lr_at_floor=None if schedule is None else bool(schedule.at_floor and schedule.floor_fraction >= 0.25),
        plateau_p=flat.p_value,
        flat=flat.flat,
        held=flat.held,
        onset=flat.onset,
    )
    return Measurement(values, record.x_unit, flat.onset)


def _schedule(req: Request) -> "signals.LrSchedule | None":
    def compute() -> "signals.LrSchedule | None":
        curve = _lr_curve(req)
        return None if curve is None else signals.lr_schedule(curve[1].steps, curve[1].values)

    return req.memo.once(("lr_schedule",), compute)


def _chance_fit(req: Request) -> Measurement | Unavailable:
    """How close training stayed to the chance level (known or inferred) over the whole run."""
    record = req.record
    smooth = req.memo.smooth
    chance = _chance(req)
    if chance is None:
        return Unavailable("no chance level: the number of classes is unknown and the curves show none")
    loss = record.get(keys.TRAIN_LOSS) or record.get(keys.STEP_LOSS)
    if loss is None:
        return Unavailable("needs train/loss or step/loss")
    finite = loss.values[np.isfinite(loss.values)]
    if finite.size < 3:
        return _too_short("the training loss")
    smoothed = smooth(finite)
    acc = _accuracy(req, keys.TRAIN_ACC)
    acc_last = None
    if acc is not None and np.isfinite(acc.values).any():
        acc_last = float(median(acc.values[np.isfinite(acc.values)][-3:]))
    val = record.get(keys.VAL_LOSS)
    val_best = None
    if val is not None and np.isfinite(val.values).sum() >= 3:
        val_best = float(np.min(smooth(val.values[np.isfinite(val.values)]))) / chance.loss
    band = _band(req)
    told, told_text = _lr_evidence(req, None if band is None else band.highest)
    values = {
        "num_classes": chance.num_classes,
        "chance_loss": chance.loss,
        "chance_acc": chance.acc,
        "how": chance.how,
        "last_loss": float(median(finite[-3:])),
        "best_vs_chance": float(np.min(smoothed)) / chance.loss,
        "last_vs_chance": float(median(finite[-3:])) / chance.loss,
        "acc": acc_last,
        "acc_vs_chance": None if acc_last is None else acc_last / chance.acc,
        "val_best_vs_chance": val_best,
        "lr_evidence": told,
        "lr_evidence_text": told_text,
        "points": int(finite.size),
    }
    return Measurement(values, _unit(record, keys.TRAIN_LOSS if record.get(keys.TRAIN_LOSS) is not None else keys.STEP_LOSS))


def _lr_schedule(req: Request) -> Measurement | Unavailable:
    """The logged LR's shape, and whether the run stopped improving once the LR reached its floor."""
    record = req.record
    curve = _lr_curve(req)
    if curve is None:
        return Unavailable("no learning rate was logged (step/lr/*, epoch/lr/*)")
    key, lr = curve
    res = _schedule(req)
    if res is None:
        return _too_short(key)
    monitor, mode = _monitor(req)
    metric = record.get(monitor)
    if metric is None:
        monitor, mode, metric = keys.TRAIN_LOSS, "min", record.get(keys.TRAIN_LOSS)
    flat_since_floor, points_since_floor, p_value = None, 0, None
    if metric is not None and res.floor_x is not None:
        m = _accuracy(req, monitor) if mode == "max" else metric
        m = m or metric
        x_floor = _x_in_metric_units(record, key, res.floor_x)
        after = m.steps >= x_floor if x_floor is not None else np.zeros(m.steps.size, dtype=bool)
        points_since_floor = int(np.isfinite(m.values[after]).sum())
        trend = signals.trend_test(m.steps[after], m.values[after]) if points_since_floor >= 3 else None
        if trend is not None:
            improving = 1 if mode == "max" else -1
            p_value = trend.p_value
            since = m.values[after][np.isfinite(m.values[after])]
            level = float(median(np.abs(since))) or 1.0
            gain = improving * trend.slope * float(np.ptp(m.steps[after])) / level
            # flat: no significant improvement, or one too small to matter (under 1% of the level since the floor)
            flat_since_floor = not (trend.significant(0.05) and trend.direction == improving and gain >= 0.01)
    values = _values(
        res,
        series=key,
        monitor=monitor,
        flat_since_floor=flat_since_floor,
        points_since_floor=points_since_floor,
        floor_p=p_value,
        complete=_complete(record),
        suggested_warmup_epochs=_suggested_warmup(record),
    )
    return Measurement(values, _unit(record, key), res.floor_x if res.at_floor else res.peak_x)


def _x_in_metric_units(record: RunRecord, lr_key: str, x: float) -> float | None:
    """An x of the LR curve in the evaluation curves' unit (step-level LR on an epoch-indexed run)."""
    if _unit(record, lr_key) == record.x_unit:
        return x
    steps = context.steps_per_epoch_of(record)
    if record.x_unit == "epoch" and steps:
        return x / steps
    return None


def _complete(record: RunRecord) -> bool | None:
    """Whether the log reached the end its run planned: True/False when the log says, None when it cannot tell."""
    if record.status == "FINISHED" or record.meta.get("stop_reason") in ("max_epochs", "early_stopping", "max_steps"):
        return True
    if record.status == "RUNNING":
        return False
    planned, last = record.meta.get("max_steps"), record.meta.get("last_step")
    if isinstance(planned, (int, float)) and isinstance(last, (int, float)) and planned > 0:
        return bool(last >= 0.98 * planned)
    return None


def _suggested_warmup(record: RunRecord) -> float | None:
    """A warmup of a tenth of the run, in epochs (at least half an epoch); None when the run's length is unknown."""
    epochs = context.max_epochs_of(record)
    return None if epochs is None else max(0.5, round(0.1 * epochs, 1))


def _still_improving(req: Request) -> Measurement | Unavailable:
    """The monitored metric's improvement at the end; val/loss too when it is not the monitor.

    Early stopping on val/acc can end a run whose val/loss is still falling at
    every epoch: either curve still improving (by ``min_gain``, best at the
    end) counts, and the evidence names which. How the run ended is evidence,
    not a gate.
    """
    record = req.record
    monitor, mode = _monitor(req)
    candidates = [(monitor, mode)]
    if monitor != keys.VAL_LOSS and record.get(keys.VAL_LOSS) is not None:
        candidates.append((keys.VAL_LOSS, "min"))
    min_gain = float(_param(req, "min_gain", 0.01))
    min_gain_other = float(_param(req, "min_gain_other", 0.05))
    chosen = None
    for key, key_mode in candidates:
        s = record.get(key)
        if s is None:
            continue
        if key_mode == "max":
            s = _accuracy(req, key) or s
        finite = int(np.isfinite(s.values).sum())
        window = max(int(_param(req, "min_window", 5)), int(round(finite * float(_param(req, "window_fraction", 0.3)))))
        res = signals.still_improving(
            s.steps, s.values, improving=-1 if key_mode == "min" else 1, window=window, alpha=float(_param(req, "alpha", 0.05))
        )
        if res is None:
            continue
        if chosen is None:
            chosen = (key, res)
        # the monitor by its own trend; the other curve only when it fell at every point of the window, by more
        if key == monitor:
            counts = res.improving and res.gain >= min_gain
        else:
            counts = res.held >= res.window - 1 and res.gain >= min_gain_other
        if counts and res.best_at_end:
            chosen = (key, res)
            break
    if chosen is None:
        return Unavailable(f"the monitored metric {monitor} was not recorded") if record.get(monitor) is None else _too_short(monitor)
    key, res = chosen
    stop = record.meta.get("stop_reason")
    known_end = stop in ("max_epochs", "max_steps", "early_stopping")
    min_unknown = int(_param(req, "min_points_unknown_end", 5))
    if not known_end and int(np.isfinite(record.series[key].values).sum()) < min_unknown:
        return Unavailable(
            f"{key} has fewer than {min_unknown} evaluations and the run does not say how it ended: too few to tell a trend"
        )
    ended = {
        "max_epochs": "the run ended at its max_epochs budget",
        "early_stopping": f"early stopping ended the run (on {monitor})",
        "max_steps": "the run ended at its max_steps budget",
    }.get(str(stop), "the log ends there")
    patience = context.early_stopping_patience(record)
    chance = _chance(req)
    train = record.get(keys.TRAIN_LOSS) or record.get(keys.STEP_LOSS)
    at_chance = None
    if chance is not None and train is not None and np.isfinite(train.values).sum() >= 3:
        at_chance = bool(float(np.min(req.memo.smooth(train.values[np.isfinite(train.values)]))) >= 0.85 * chance.loss)
    values = _values(
        res,
        series=key,
        train_at_chance=at_chance,
        ended=ended,
        stop_reason=stop,
        patience_needed=2 * patience if stop == "early_stopping" and patience else None,
    )
    return Measurement(values, record.x_unit, res.onset)


def _best_point(req: Request) -> Measurement | Unavailable:
    record = req.record
    monitor, mode = _monitor(req)
    s = record.get(monitor)
    if s is None:
        return Unavailable(f"the monitored metric {monitor} was not recorded")
    res = signals.best_point(s.steps, s.values, mode)
    if res is None:
        return _too_short(monitor)
    patience = context.early_stopping_patience(record)
    values = _values(
        res,
        series=monitor,
        patience=patience,
        beyond_patience=res.after - (patience or 0),
        range_vs_noise=_range_vs_noise(s.values, req.memo.smooth),
        loss_rose=_loss_rose(monitor, mode, s.values, res.value),
        onset=res.x,
    )
    return Measurement(values, record.x_unit, res.x)


def _loss_rose(monitor: str, mode: str, values: np.ndarray, best: float) -> bool:
    """Whether a monitored loss ended 10% or more above its best: a run that got worse is PD301's, not PD204's."""
    finite = values[np.isfinite(values)]
    if mode != "min" or not monitor.endswith("loss") or finite.size < 3:
        return False
    return bool(float(median(finite[-3:])) >= best + 0.1 * abs(best))


def _range_vs_noise(values: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray]) -> float:
    """How far the (noise-sized) smoothed curve travels, in units of its own point-to-point noise.

    A curve whose whole range sits inside its noise has no meaningful best
    point: which evaluation came out on top is chance. ``smooth`` is
    :func:`paramdoctor.signals.smooth` (or the diagnosis's memo of it).
    """
    from paramdoctor.signals.noise import noise_scale

    v = values[np.isfinite(values)]
    if v.size < 3:
        return 0.0
    travel = float(np.ptp(smooth(v)))
    noise = noise_scale(v)
    if noise <= 0.0:
        return math.inf if travel > 0 else 0.0
    return travel / noise


def _divergence(req: Request) -> Measurement | Unavailable:
    record = req.record
    train, val = _aligned(req, keys.TRAIN_LOSS, keys.VAL_LOSS)
    res = signals.divergence_onset(train.steps, train.values, val.values, smoother=req.memo.smooth)
    if res is None:
        return _too_short("train/loss and val/loss together")
    return Measurement(_values(res), record.x_unit, res.onset)


def _gap(req: Request) -> Measurement | Unavailable:
    record = req.record
    train, val = _aligned(req, keys.TRAIN_LOSS, keys.VAL_LOSS)
    ta, va = _accuracy(req, keys.TRAIN_ACC), _accuracy(req, keys.VAL_ACC)
    train_acc = val_acc = None
    if ta is not None and va is not None:
        train_acc = _on(ta, train.steps)
        val_acc = _on(va, train.steps)
    res = signals.generalization_gap(train.steps, train.values, val.values, train_acc, val_acc, smoother=req.memo.smooth)
    if res is None:
        return _too_short("train/loss and val/loss together")
    return Measurement(_values(res), record.x_unit, res.onset)


def _near_chance(req: Request) -> Measurement | Unavailable:
    record = req.record
    chance = _chance(req)
    if chance is None:
        return Unavailable("no chance level: the number of classes is unknown and the curves show none")
    n = chance.num_classes
    val = record.series[keys.VAL_LOSS]
    acc = _accuracy(req, keys.VAL_ACC)
    res = signals.near_chance(
        val.steps,
        val.values,
        record.series[keys.TRAIN_LOSS].values,
        n,
        val_acc=None if acc is None else acc.values,
        min_val_loss_vs_chance=float(_param(req, "min_val_loss_vs_chance", 0.8)),
        smoother=req.memo.smooth,
    )
    if res is None:
        return _too_short("val/loss or train/loss")
    skill = None if res.val_acc is None else (res.val_acc - res.chance) / (1.0 - res.chance)
    return Measurement(_values(res, num_classes=n, val_skill=skill), record.x_unit, res.onset)


def _update_ratio(req: Request) -> Measurement | Unavailable:
    record = req.record
    res = _band(req)
    if res is None:
        return Unavailable("no layer group has a nonzero update ratio sample")
    loss = record.get(keys.TRAIN_LOSS)
    prog = None
    if loss is not None:
        prog = _train_progress(req)
    boost = float(f"{min(1000.0, max(10.0, 1e-3 / res.highest)):.2g}") if res.highest > 0 else None
    return Measurement(_values(res, train_drop=None if prog is None else prog.drop, lr_boost=boost), "step")


def _grad_norm(req: Request) -> Measurement | Unavailable:
    record = req.record
    s = record.series[keys.STEP_GRAD_NORM]
    res = signals.grad_norm_change(s.steps, s.values, factor=10.0 ** float(_param(req, "min_orders", 2.0)))
    if res is None:
        return _too_short(keys.STEP_GRAD_NORM)
    loss = record.get(keys.TRAIN_LOSS)
    prog = None
    if loss is not None:
        prog = _train_progress(req, num_classes=True)
    values = _values(
        res,
        loss_level=None if prog is None else prog.loss_level,
        level_text=None if prog is None else prog.level_text,
    )
    return Measurement(values, "step", res.onset)


def _slow_updates(req: Request) -> Measurement | Unavailable:
    """Typical update ratios over most of training, where the monitored metric was best, and the LR factor for a slow head."""
    record = req.record
    res = signals.typical_update_ratios(_telemetry(req, keys.TELEMETRY_UPDATE_RATIO))
    if res is None:
        return Unavailable("no layer group has a nonzero update ratio sample")
    monitor, mode = _monitor(req)
    curve = record.get(monitor)
    best = signals.best_point(curve.steps, curve.values, mode) if curve is not None else None
    target = float(_param(req, "target_ratio", 1e-3))
    head_factor = None
    if res.head is not None and res.head > 0 and res.head < float(_param(req, "max_ratio", 5e-4)):
        head_factor = float(f"{min(10.0, target / res.head):.2g}")
    values = _values(
        res,
        best_position=None if best is None else best.position,
        best_x=None if best is None else best.x,
        monitor=monitor,
        head_factor=head_factor,
    )
    return Measurement(values, "step")


def _drift(req: Request) -> Measurement | Unavailable:
    res = signals.backbone_drift(_telemetry(req, keys.TELEMETRY_DRIFT), threshold=float(_param(req, "max_drift", 0.5)))
    if res is None:
        return Unavailable("no backbone layer group has drift telemetry")
    return Measurement(_values(res), "step", res.onset)


def _initial_loss(req: Request) -> Measurement | Unavailable:
    record = req.record
    n = context.num_classes_of(record)
    if n is None:
        return Unavailable("the number of classes is unknown (meta num_classes / tag paramdoctor.num_classes)")
    s = record.series[req.series]
    res = signals.initial_loss(s.values, n)
    if res is None:
        return _too_short(req.series)
    return Measurement(_values(res, series=req.series, num_classes=n), _unit(record, req.series), float(s.steps[0]))


def _decay(req: Request) -> Measurement | Unavailable:
    settings = context.optimizer_settings(req.record)
    if settings is None:
        return Unavailable("the run's config does not say which optimizer, learning rate and weight decay it used")
    name, lr, wd, momentum = settings
    res = signals.decay_strength(name, lr, wd, momentum, target=float(_param(req, "target_shrink", 5e-4)))
    if res is None:
        return Unavailable(f"the decay pull of optimizer {name!r} cannot be read from its config (only SGD and AdamW)")
    return Measurement(_values(res), "step")


# --- helpers ------------------------------------------------------------------------


def _aligned(req: Request, a: str, b: str) -> tuple[Series, Series]:
    """Two epoch-level curves on their common x positions."""

    def compute() -> tuple[Series, Series]:
        sa, sb = req.record.series[a], req.record.series[b]
        common = np.intersect1d(sa.steps, sb.steps)
        return Series(common, _on(sa, common)), Series(common, _on(sb, common))

    return req.memo.once(("aligned", a, b), compute)


def _on(s: Series, xs: np.ndarray) -> np.ndarray:
    """The values of ``s`` at positions ``xs`` (the last value logged at each; NaN where absent)."""
    xs = np.asarray(xs, dtype=float)
    out = np.full(xs.shape, math.nan)
    if s.steps.size == 0:
        return out
    at = np.searchsorted(s.steps, xs, side="right") - 1  # the last position at or before x (steps are sorted)
    hit = (at >= 0) & (s.steps[np.maximum(at, 0)] == xs)
    out[hit] = s.values[at[hit]]
    return out


_LOSSES = (keys.STEP_LOSS, keys.TRAIN_LOSS)
_CURVES = (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.TRAIN_ACC, keys.VAL_ACC)

SIGNALS: dict[str, SignalSpec] = {
    spec.name: spec
    for spec in (
        SignalSpec(
            "nonfinite_loss",
            "the first NaN/inf in step/loss, train/loss or val/loss (or a run stopped for a non-finite loss)",
            _fields(signals.NonFinite, "found", "series", "onset", "lr_factor", "early_update_ratio"),
            _nonfinite,
            reads={"target_update_ratio": 1e-2},
        ),
        SignalSpec(
            "loss_explosion",
            "growth of the loss's rolling median over its running minimum",
            _fields(
                signals.Explosion, "series", "peak_vs_start", "peak_vs_first", "rise_vs_first", "held_fraction", "first", "lr_factor",
                "early_update_ratio",
            ),
            _explosion,
            inputs=_LOSSES,
            reads={"min_growth": 10.0, "target_update_ratio": 1e-2},
        ),
        SignalSpec(
            "loss_spikes",
            "upward spikes (robust z-score against a rolling median) in the early part of a curve",
            _fields(signals.Spikes, "series"),
            _spikes,
            inputs=(keys.STEP_LOSS, keys.TRAIN_LOSS),
            reads={"early_fraction": 0.3, "z": 6.0, "min_ratio": 1.5},
        ),
        SignalSpec(
            "oscillation",
            "swing of a curve around its monotone trend",
            _fields(signals.Oscillation, "series", "spiky", "swing_rate", "lr_tiny", "train_samples", "batch_growth", "lr_scale"),
            _oscillation,
            inputs=_CURVES + (keys.STEP_LOSS,),
            reads={"batch_growth": 8.0, "max_batch": 256},
        ),
        SignalSpec(
            "train_progress",
            "how far train/loss fell from the start, its plateau test, final train/acc and the largest group update ratio",
            _fields(
                signals.Progress, "update_ratio", "lr_boost", "lr_evidence", "lr_evidence_text", "warmup_running", "lr_at_floor",
                "plateau_p", "flat", "held", "onset",
            ),
            _progress,
            needs=(keys.TRAIN_LOSS,),
            reads={"window": 5, "min_gain": 0.02},
        ),
        SignalSpec(
            "still_improving",
            "a significant (Mann-Kendall) improvement of the monitored metric over the last part of the run",
            _fields(signals.Improvement, "series", "train_at_chance", "ended", "stop_reason", "patience_needed"),
            _still_improving,
            reads={"window_fraction": 0.3, "min_window": 5, "alpha": 0.05, "min_gain": 0.01, "min_gain_other": 0.05,
                   "min_points_unknown_end": 5},
        ),
        SignalSpec(
            "best_point",
            "where the monitored metric was best, and how many evaluations came after it",
            _fields(signals.BestPoint, "series", "patience", "beyond_patience", "range_vs_noise", "loss_rose", "onset"),
            _best_point,
        ),
        SignalSpec(
            "divergence_onset",
            "val/loss turning up from its smoothed minimum while train/loss keeps falling",
            _fields(signals.Divergence),
            _divergence,
            needs=(keys.TRAIN_LOSS, keys.VAL_LOSS),
        ),
        SignalSpec(
            "generalization_gap",
            "the final train/val gap in loss and accuracy and whether it is widening (Theil-Sen)",
            _fields(signals.Gap),
            _gap,
            needs=(keys.TRAIN_LOSS, keys.VAL_LOSS),
        ),
        SignalSpec(
            "val_near_chance",
            "validation loss and accuracy against chance level (ln C, 1/C) next to the training loss",
            _fields(signals.NearChance, "num_classes", "val_skill"),
            _near_chance,
            needs=(keys.VAL_LOSS, keys.TRAIN_LOSS),
            reads={"min_val_loss_vs_chance": 0.8},
        ),
        SignalSpec(
            "update_ratio",
            "median update/weight ratio per layer group over the second half of training",
            _fields(signals.UpdateBand, "train_drop", "lr_boost"),
            _update_ratio,
            needs=("telemetry/*/update_ratio",),
        ),
        SignalSpec(
            "grad_norm_change",
            "growth or collapse of the global gradient norm, in orders of magnitude",
            _fields(signals.GradNormChange, "loss_level", "level_text"),
            _grad_norm,
            needs=(keys.STEP_GRAD_NORM,),
            reads={"min_orders": 2.0},
        ),
        SignalSpec(
            "slow_updates",
            "typical update/weight ratios of the backbone and the head over the first 80% of training",
            _fields(signals.TypicalUpdates, "best_position", "best_x", "monitor", "head_factor"),
            _slow_updates,
            needs=("telemetry/*/update_ratio",),
            reads={"max_ratio": 5e-4, "target_ratio": 1e-3},
        ),
        SignalSpec(
            "backbone_drift",
            "relative distance of backbone layer groups from their initial weights",
            _fields(signals.Drift),
            _drift,
            needs=("telemetry/*/drift",),
            reads={"max_drift": 0.5},
        ),
        SignalSpec(
            "weight_decay_pull",
            "the fraction of every weight that weight decay removes per optimizer step, from the optimizer config",
            _fields(signals.DecayStrength),
            _decay,
            reads={"target_shrink": 5e-4},
        ),
        SignalSpec(
            "chance_fit",
            "training loss and accuracy against the chance level (known, or inferred from the curves), and LR evidence",
            (
                "num_classes", "chance_loss", "chance_acc", "how", "last_loss", "best_vs_chance", "last_vs_chance", "acc",
                "acc_vs_chance", "val_best_vs_chance", "lr_evidence", "lr_evidence_text", "points",
            ),
            _chance_fit,
        ),
        SignalSpec(
            "lr_schedule",
            "the logged learning rate's shape: a warmup still running, a floor reached, and progress since the floor",
            _fields(
                signals.LrSchedule, "series", "monitor", "flat_since_floor", "points_since_floor", "floor_p", "complete",
                "suggested_warmup_epochs",
            ),
            _lr_schedule,
        ),
        SignalSpec(
            "isolated_spikes",
            "points of val/loss or train/loss that jump far above their neighbours and come back",
            _fields(signals.IsolatedSpikes, "series", "spiky"),
            _isolated_spikes,
            reads={"min_ratio": 3.0, "min_spikes": 2, "single_ratio": 8.0},
        ),
        SignalSpec(
            "initial_loss",
            "the first losses against ln(num_classes)",
            _fields(signals.InitialLoss, "series", "num_classes"),
            _initial_loss,
            inputs=_LOSSES,
        ),
    )
}
