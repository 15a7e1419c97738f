"""Signals on epoch-level curves: best point, train/val divergence, generalization gap, oscillation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from paramdoctor.signals.noise import finite_xy, mad, median, noise_scale, smooth
from paramdoctor.signals.trend import trend_test


@dataclass(frozen=True)
class BestPoint:
    """Where a curve was best.

    ``position`` is the best point's rank as a fraction of the run
    ((index + 1) / n: 1.0 = the last point); ``after`` the number of points
    that came after it without beating it ("wasted" evaluations).
    ``longest_wait`` is the most evaluations the run had to wait for a new
    best on its way to the best point: an early-stopping patience below it
    would have stopped the run before its best. ``suggested_patience`` is a
    patience that survives that wait and is at least a tenth of the run.
    """

    index: int
    x: float
    value: float
    last_x: float
    n: int
    position: float
    after: int
    wasted_fraction: float
    longest_wait: int
    suggested_patience: int


def best_point(x, values, mode: str = "min") -> BestPoint | None:
    """The first best finite point (``mode`` "min" or "max"); None for an empty curve.

    The first occurrence wins ties, as in early stopping, where only a strict
    improvement counts. Invariant under positive affine transforms of the values.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    x, v = finite_xy(x, values)
    n = v.size
    if n == 0:
        return None
    i = int(np.argmin(v) if mode == "min" else np.argmax(v))
    signed = v if mode == "max" else -v
    records = np.flatnonzero(signed[: i + 1] > np.maximum.accumulate(np.concatenate(([-np.inf], signed[:i]))))
    longest_wait = int(np.max(np.diff(records))) if records.size > 1 else 0
    return BestPoint(
        index=i,
        x=float(x[i]),
        value=float(v[i]),
        last_x=float(x[-1]),
        n=int(n),
        position=(i + 1) / n,
        after=int(n - 1 - i),
        wasted_fraction=(n - 1 - i) / n,
        longest_wait=longest_wait,
        suggested_patience=max(longest_wait + 1, math.ceil(n / 10)),
    )


@dataclass(frozen=True)
class Divergence:
    """Validation loss turning up after its minimum while training loss keeps falling.

    The minimum is located on the noise-sized smoothed curve, so one lucky
    evaluation cannot move it; the quoted values are raw: ``best_val_loss`` the
    lowest point around that minimum, ``last_val_loss`` the median of the last
    three points. ``rise`` is the relative rise between the two, ``train_drop``
    the relative fall of train/loss over the same stretch (raw: its median
    around the minimum against its last three points), ``held`` the number of
    trailing points whose val/loss sits above the minimum by more than the
    noise (a sustained rise, not one point), ``onset`` the first point after
    the minimum.
    """

    best_x: float
    best_val_loss: float
    last_x: float
    last_val_loss: float
    rise: float
    train_drop: float
    noise: float
    held: int
    onset: float | None


def divergence_onset(x, train_loss, val_loss, *, smoother: Callable[[np.ndarray], np.ndarray] = smooth) -> Divergence | None:
    """Sustained train/val divergence; None with fewer than 4 common finite points (``smoother``: as in ``progress``)."""
    x = np.asarray(x, dtype=float).reshape(-1)
    t = np.asarray(train_loss, dtype=float).reshape(-1)
    v = np.asarray(val_loss, dtype=float).reshape(-1)
    mask = np.isfinite(x) & np.isfinite(t) & np.isfinite(v)
    x, t, v = x[mask], t[mask], v[mask]
    if v.size < 4:
        return None
    sv = smoother(v)
    b = int(np.argmin(sv))
    # quote raw values: the lowest raw point around the smoothed minimum, the median of the last three
    best = float(np.min(v[max(b - 1, 0) : b + 2]))
    last = float(median(v[max(b, v.size - 3) :]))
    rise = (last - best) / (abs(best) or 1.0)
    # the training loss where validation was best (raw, around that point) against its last three points
    train_at_best = float(median(t[max(b - 1, 0) : b + 2]))
    train_drop = (train_at_best - float(median(t[max(b, t.size - 3) :]))) / (abs(train_at_best) or 1.0)
    noise = noise_scale(v)
    trailing = v[::-1][: v.size - 1 - b]
    below = np.flatnonzero(~(trailing > best + 1.0 * noise))
    held = int(below[0]) if below.size else int(trailing.size)  # trailing points above the minimum by more than the noise
    return Divergence(
        best_x=float(x[b]),
        best_val_loss=best,
        last_x=float(x[-1]),
        last_val_loss=last,
        rise=float(rise),
        train_drop=float(train_drop),
        noise=float(noise),
        held=held,
        onset=float(x[b + 1]) if b + 1 < x.size else None,
    )


@dataclass(frozen=True)
class Gap:
    """The generalization gap at the end of training and whether it is widening.

    ``loss_gap`` is val/loss minus train/loss and ``acc_gap`` train/acc minus
    val/acc (None without accuracy curves), both from the smoothed curves at the
    last point. ``slope``/``slope_low`` are the Theil-Sen slope of the loss gap
    over the second half of the run and its lower 95% bound (``widening`` when
    that bound is above zero); ``widened`` how much the loss gap grew over
    that half by its Theil-Sen slope, relative to its size where the half
    began (a gap of 0.39 growing by 0.004 is flat in practice, however
    significant the slope). ``val_rise`` is how far val/loss rose from its
    minimum (relative), which tells a widening gap from a turn-up;
    ``val_drop`` how far it fell from the start to that minimum (relative),
    which tells a model that generalised at first from one that never did.
    """

    loss_gap: float
    loss_ratio: float
    acc_gap: float | None
    slope: float
    slope_low: float
    widening: bool
    widened: float
    val_rise: float
    val_drop: float
    onset: float


def generalization_gap(
    x, train_loss, val_loss, train_acc=None, val_acc=None, *, smoother: Callable[[np.ndarray], np.ndarray] = smooth
) -> Gap | None:
    """Gap and its trend; None with fewer than 6 common finite loss points (``smoother``: as in ``progress``)."""
    x = np.asarray(x, dtype=float).reshape(-1)
    t = np.asarray(train_loss, dtype=float).reshape(-1)
    v = np.asarray(val_loss, dtype=float).reshape(-1)
    mask = np.isfinite(x) & np.isfinite(t) & np.isfinite(v)
    if int(mask.sum()) < 6:
        return None
    xs, st, sv = x[mask], smoother(t[mask]), smoother(v[mask])
    gap = sv - st
    half = xs.size // 2
    trend = trend_test(xs[half:], gap[half:])
    assert trend is not None
    acc_gap = None
    if train_acc is not None and val_acc is not None:
        ta = np.asarray(train_acc, dtype=float).reshape(-1)
        va = np.asarray(val_acc, dtype=float).reshape(-1)
        if ta.shape == va.shape == x.shape:
            amask = np.isfinite(ta) & np.isfinite(va)
            if amask.sum() >= 3:
                acc_gap = float(smoother(ta[amask])[-1] - smoother(va[amask])[-1])
    best = float(np.min(sv))
    span = float(xs[-1] - xs[half])
    base = abs(float(median(gap[half : half + 3])))
    return Gap(
        loss_gap=float(gap[-1]),
        loss_ratio=float(sv[-1] / st[-1]) if st[-1] > 0 else float("inf"),
        acc_gap=acc_gap,
        slope=trend.slope,
        slope_low=trend.slope_low,
        widening=bool(trend.slope_low > 0.0),
        widened=float(trend.slope * span / base) if base > 0 else float("inf"),
        val_rise=float((sv[-1] - best) / (abs(best) or 1.0)),
        val_drop=float((sv[0] - best) / (abs(sv[0]) or 1.0)),
        onset=float(xs[half]),
    )


@dataclass(frozen=True)
class Oscillation:
    """How much a curve swings around its monotone trend.

    The trend is the best monotone (isotonic) fit in the improving direction, so
    a curve that only ever improves has no residual at all. ``amplitude`` is the
    robust spread of the residual, ``rel_amplitude`` that spread relative to
    the curve's typical level, ``swing_vs_progress`` relative to how far the
    trend travelled, ``sign_change_fraction`` the share of consecutive
    differences that reverse direction, ``held`` the number of swings: steps
    against the improving direction larger than the amplitude, ``onset`` the
    first of them.
    """

    amplitude: float
    rel_amplitude: float
    progress: float
    swing_vs_progress: float
    sign_change_fraction: float
    held: int
    onset: float | None


def oscillation(x, values, *, improving: int = -1) -> Oscillation | None:
    """Swing of a curve around its monotone trend; None with fewer than 5 finite points."""
    x, v = finite_xy(x, values)
    if v.size < 5:
        return None
    trend = isotonic(v, increasing=improving > 0)
    residual = v - trend
    amplitude = max(mad(residual), float(np.sqrt(np.mean(residual**2))) * 0.5)
    level = float(median(np.abs(trend))) or 1.0
    progress = float(abs(trend[0] - trend[-1]))
    d = np.diff(v)
    d = d[d != 0]
    changes = np.signbit(d[1:]) != np.signbit(d[:-1])
    fraction = float(changes.mean()) if changes.size else 0.0
    # a swing: a step against the improving direction larger than the noise floor
    against = np.diff(v) * (-improving)
    floor = max(amplitude, 1e-12)
    swings = np.nonzero(against > floor)[0]
    return Oscillation(
        amplitude=float(amplitude),
        rel_amplitude=float(amplitude / level),
        progress=progress,
        swing_vs_progress=float(amplitude / progress) if progress > 0 else float("inf"),
        sign_change_fraction=fraction,
        held=int(swings.size),
        onset=float(x[swings[0] + 1]) if swings.size else None,
    )


def isotonic(values: np.ndarray, *, increasing: bool = True) -> np.ndarray:
    """``scipy.optimize.isotonic_regression(values, increasing=...).x`` (unit weights), number for number.

    The pool-adjacent-violators pass scipy runs (Busing 2022, Algorithm 1,
    with ties pooled), in the same order of additions and divisions; with
    unit weights every product is exact, so the block means come out to the
    same bits. A curve of a few hundred points takes microseconds, and
    ``scipy.optimize`` (seconds to import) is not imported.
    ``tests/signals/test_curves.py`` checks it against scipy.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    x = v.tolist() if increasing else v[::-1].tolist()
    n = len(x)
    if n == 0:
        return np.zeros(0)
    w = [1.0] * n
    ends = [0] * (n + 1)  # block b holds x[ends[b]:ends[b + 1]]
    ends[1] = 1
    b = 0
    last_x, last_w = x[0], w[0]
    i = 1
    while i < n:
        b += 1
        xb, wb = x[i], w[i]
        if last_x >= xb:  # the new point does not rise: pool it with the block before
            b -= 1
            sb = last_w * last_x + wb * xb
            wb += last_w
            xb = sb / wb
            while i < n - 1 and xb >= x[i + 1]:  # pool the points ahead that lie below the new mean
                i += 1
                sb += w[i] * x[i]
                wb += w[i]
                xb = sb / wb
            while b > 0 and x[b - 1] >= xb:  # and the blocks behind that lie above it
                b -= 1
                sb += w[b] * x[b]
                wb += w[b]
                xb = sb / wb
        x[b] = last_x = xb
        w[b] = last_w = wb
        ends[b + 1] = i + 1
        i += 1
    out = [0.0] * n
    stop = n
    for k in range(b, -1, -1):
        start = ends[k]
        out[start:stop] = [x[k]] * (stop - start)
        stop = start
    result = np.array(out, dtype=np.float64)
    return result if increasing else result[::-1].copy()
