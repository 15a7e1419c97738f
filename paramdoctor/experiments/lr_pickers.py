"""Pickers: from a learning-rate range test's curve to one suggested learning rate.

Pure functions of numbers (numpy, scipy), as fastai keeps its suggestion
functions apart from the callback that records the sweep. Every picker takes a
:class:`Curve` (the LR of each step, the raw loss of each step, its
bias-corrected EMA) and returns a :class:`Suggestion`: an LR, or ``None`` with
the reason no LR can be suggested.

``steepest``
    The LR where the EMA-smoothed loss falls fastest per unit of log LR (the
    minimum of its gradient), on fastai's trimmed curve (the first tenth of the
    planned steps and the last 5 points dropped). The classic pick (fastai's
    ``steep``, torch-lr-finder's suggestion). It has two known weaknesses: one
    noisy step can make the steepest gradient anywhere, and the EMA it reads
    lags the raw loss by ``beta / (1 - beta)`` steps (49 at fastai's 0.98: two
    decades on a 200-step sweep over 8 decades), which pushes everything it
    finds towards larger LRs.
``valley``
    fastai's default (``fastai.callback.schedule.valley``), reimplemented
    exactly: on the same trimmed EMA curve, the longest strictly decreasing
    subsequence of losses (not necessarily contiguous) is "the longest
    valley"; with ``L`` its length in points and ``start = end - L``, the pick
    is the point ``start + floor(L/3) + floor(L/6)``, about half-way along the
    valley by index (fastai's own description says "2/3"; the code stops at
    1/3 + 1/6). Robust to a single spike, but it inherits the EMA's lag.
``minimum``
    fastai's ``minimum``: a tenth of the LR at the lowest point of the trimmed
    EMA curve. Also lagged.
``robust``
    This project's picker, built to hold up on noisy curves:

    1. smooth the *raw* losses with a zero-phase filter, so nothing lags: a
       running median over 5 points (removes single-step spikes), then a
       Savitzky-Golay filter (quadratic, a window of ``window_decades`` = 0.5
       decade of log LR, ``scipy.signal.savgol_filter``); raw losses above
       twice the starting level are clipped first, so the blow-up does not
       bend the curve before it;
    2. the minimum of that curve, ``m``, and the highest point before it,
       ``h``; the drop is ``loss[h] - loss[m]``;
    3. stability check: the drop must exceed ``min_drop_sigmas`` (4) times
       the noise of the raw loss around the smooth curve (1.4826 x the median
       absolute residual) and 2% of ``loss[h]``, the minimum must lie at least
       ``0.25`` decade after the first point, and there must be at least 10
       points before divergence; otherwise no suggestion (the loss never
       clearly descended);
    4. the suggestion is the geometric mean of two robust landmarks of the
       descent: the LR where the smooth curve has made half of its drop (a
       level crossing, the robust stand-in for the steepest point) and the LR
       of its minimum. It is the minimum divided by a factor the curve itself
       sets (the square root of the descent's width), and it lies in the
       descending region by construction.

:data:`DEFAULT_PICKER` is the one that measured best (``benchmarks/lr_find.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_PICKER",
    "PICKERS",
    "Curve",
    "Suggestion",
    "ema",
    "first_divergence",
    "minimum",
    "robust",
    "robust_smooth",
    "steepest",
    "suggest_all",
    "valley",
]

FASTAI_SKIP_END = 5  # fastai drops the last 5 recorded points before suggesting
MIN_POINTS = 10


@dataclass(frozen=True)
class Curve:
    """A sweep's record: per kept step the head LR, the raw loss and its bias-corrected EMA."""

    lrs: Sequence[float]
    losses: Sequence[float]
    smoothed: Sequence[float]
    steps_planned: int | None = None  # fastai trims steps_planned // 10 points from the start

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lrs = np.asarray(self.lrs, dtype=float)
        losses = np.asarray(self.losses, dtype=float)
        smoothed = np.asarray(self.smoothed, dtype=float)
        if not (lrs.shape == losses.shape == smoothed.shape):
            raise ValueError(f"lrs, losses and smoothed differ in length: {lrs.shape}, {losses.shape}, {smoothed.shape}")
        return lrs, losses, smoothed


@dataclass(frozen=True)
class Suggestion:
    """A picker's answer: ``lr`` (None when it cannot suggest one, with ``reason``) and where it sits."""

    picker: str
    lr: float | None
    index: int | None = None  # the step (0-based, into the curve) nearest to the suggestion
    reason: str | None = None  # why there is no suggestion, or a caveat

    @property
    def ok(self) -> bool:
        return self.lr is not None

    def to_dict(self) -> dict:
        return {"picker": self.picker, "lr": self.lr, "index": self.index, "reason": self.reason}


# --- shared pieces -------------------------------------------------------------------------


def ema(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """fastai's smoothed loss: ``avg = beta*avg + (1-beta)*loss``, divided by ``1 - beta**(i+1)`` (bias correction)."""
    values = np.asarray(losses, dtype=float)
    out = np.empty_like(values)
    avg = 0.0
    for i, value in enumerate(values):
        avg = beta * avg + (1 - beta) * value
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def first_divergence(smoothed: Sequence[float], factor: float = 4.0) -> int | None:
    """Index of the first point where the smoothed loss exceeds ``factor`` x its lowest value so far (the sweep stops there)."""
    values = np.asarray(smoothed, dtype=float)
    if values.size == 0:
        return None
    best = np.minimum.accumulate(values)
    over = np.nonzero(values > factor * best)[0]
    return int(over[0]) if over.size else None


def _fastai_trim(curve: Curve) -> tuple[np.ndarray, np.ndarray, int]:
    """fastai's view of the curve: ``[steps_planned // 10 : -5]`` of the EMA, cut before the first NaN.

    Returns the LRs, the losses and the offset of the first kept point.
    """
    lrs, _, smoothed = curve.arrays()
    planned = curve.steps_planned or len(lrs)
    start = planned // 10
    stop = len(lrs) - FASTAI_SKIP_END
    lrs, smoothed = lrs[start:stop], smoothed[start:stop]
    bad = np.nonzero(~np.isfinite(smoothed))[0]
    if bad.size:
        lrs, smoothed = lrs[: bad[0]], smoothed[: bad[0]]
    return lrs, smoothed, start


def _too_short(name: str, n: int) -> Suggestion:
    return Suggestion(name, None, reason=f"only {n} usable points in the sweep (need {MIN_POINTS}); lower --start or add --steps")


def _nearest(lrs: np.ndarray, lr: float) -> int:
    return int(np.argmin(np.abs(np.log10(lrs) - math.log10(lr))))


# --- the pickers ------------------------------------------------------------------------------


def steepest(curve: Curve) -> Suggestion:
    """The LR of the most negative gradient of the EMA loss against log LR (fastai's ``steep``)."""
    lrs, losses, offset = _fastai_trim(curve)
    if len(lrs) < MIN_POINTS:
        return _too_short("steepest", len(lrs))
    grads = np.diff(losses) / np.diff(np.log(lrs))
    i = int(np.argmin(grads))
    if not grads[i] < 0:
        return Suggestion("steepest", None, reason="the smoothed loss never falls")
    return Suggestion("steepest", float(lrs[i]), offset + i)


def valley(curve: Curve) -> Suggestion:
    """fastai's ``valley``: half-way (by index) along the longest decreasing subsequence of the EMA loss."""
    lrs, losses, offset = _fastai_trim(curve)
    n = len(losses)
    if n < MIN_POINTS:
        return _too_short("valley", n)
    # lds[i]: length of the longest strictly decreasing subsequence ending at i. fastai updates
    # max_end/max_start inside its inner loop, so max_start uses the first value of lds[i] that beat
    # the record, not lds[i]'s final value; replayed here vectorised over j, with the same result.
    lds = np.ones(n, dtype=np.int64)
    max_start, max_end = 0, 0
    for i in range(1, n):
        candidates = np.where(losses[:i] > losses[i], lds[:i] + 1, 1)
        running = np.maximum.accumulate(np.maximum(candidates, 1))
        lds[i] = running[-1]
        record = lds[max_end]
        if lds[i] > record:
            first = int(np.argmax(running > record))
            max_end, max_start = i, i - int(running[first])
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    idx = min(max(idx, 0), n - 1)
    if max_end == 0:
        return Suggestion("valley", None, reason="the smoothed loss never falls")
    return Suggestion("valley", float(lrs[idx]), offset + idx)


def minimum(curve: Curve) -> Suggestion:
    """fastai's ``minimum``: a tenth of the LR at the lowest EMA loss."""
    lrs, losses, offset = _fastai_trim(curve)
    if len(lrs) < MIN_POINTS:
        return _too_short("minimum", len(lrs))
    i = int(np.argmin(losses))
    lr = float(lrs[i]) / 10
    full = np.asarray(curve.lrs, dtype=float)
    return Suggestion("minimum", lr, _nearest(full, lr))


def robust_smooth(curve: Curve, *, window_decades: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zero-phase smooth curve the robust picker reads: ``(lrs, smooth, raw)`` over the finite points.

    Raw losses above twice the starting level are clipped, a 5-point running
    median removes single-step spikes, then a quadratic Savitzky-Golay filter
    spanning ``window_decades`` of log LR smooths what is left.
    """
    from scipy.signal import medfilt, savgol_filter

    lrs, losses, _ = curve.arrays()
    keep = np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0)
    lrs, raw = lrs[keep], losses[keep]
    n = len(raw)
    if n < 5:
        return lrs, raw.copy(), raw
    head = raw[: max(5, n // 20)]
    level = float(np.median(head))
    clipped = np.minimum(raw, 2 * level) if level > 0 else raw.copy()
    x = np.log10(lrs)
    span = float(x[-1] - x[0])
    per_decade = (n - 1) / span if span > 0 else float(n)
    window = int(round(window_decades * per_decade)) | 1  # odd
    window = max(5, min(window, n if n % 2 else n - 1))
    median = medfilt(clipped, kernel_size=5)
    median[:2], median[-2:] = clipped[:2], clipped[-2:]  # medfilt pads with zeros at the ends
    if window <= 3:
        return lrs, median, raw
    return lrs, savgol_filter(median, window, polyorder=2, mode="interp"), raw


def robust(
    curve: Curve,
    *,
    window_decades: float = 0.5,
    min_drop_sigmas: float = 4.0,
    min_drop_fraction: float = 0.02,
    min_decades_to_minimum: float = 0.25,
) -> Suggestion:
    """Geometric mean of the half-drop LR and the minimum's LR on a zero-phase smooth of the raw loss; see the module doc."""
    lrs, smooth, raw = robust_smooth(curve, window_decades=window_decades)
    n = len(lrs)
    if n < MIN_POINTS:
        return _too_short("robust", n)
    x = np.log10(lrs)
    m = int(np.argmin(smooth))
    if x[m] - x[0] < min_decades_to_minimum:
        return Suggestion(
            "robust", None,
            reason=f"the loss is lowest at the start of the sweep ({lrs[0]:.2g}); lower --start",
        )
    h = int(np.argmax(smooth[: m + 1]))
    high, low = float(smooth[h]), float(smooth[m])
    drop = high - low
    residual = raw[: m + 1] - smooth[: m + 1]
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if not (drop > min_drop_sigmas * noise and drop > min_drop_fraction * abs(high)):
        return Suggestion(
            "robust", None,
            reason=(f"the loss never clearly descended (drop {drop:.3g} from {high:.3g}, noise {noise:.3g}: "
                    f"needs > {min_drop_sigmas:g} x noise and > {min_drop_fraction:.0%} of the level)"),
        )
    half = low + drop / 2
    above = np.nonzero(smooth[h : m + 1] >= half)[0]
    i_half = h + int(above[-1])  # the last point still above half-way, before the minimum
    lr = float(10 ** ((x[i_half] + x[m]) / 2))
    note = None
    if m >= n - 3:
        note = "the loss was still falling at the end of the sweep; a larger --end may find a larger LR"
    full = np.asarray(curve.lrs, dtype=float)
    return Suggestion("robust", lr, _nearest(full, lr), reason=note)


PICKERS: dict[str, Callable[[Curve], Suggestion]] = {
    "robust": robust,
    "valley": valley,
    "steepest": steepest,
    "minimum": minimum,
}
DEFAULT_PICKER = "robust"


def suggest_all(curve: Curve) -> dict[str, Suggestion]:
    """Every picker's suggestion, in :data:`PICKERS` order."""
    return {name: pick(curve) for name, pick in PICKERS.items()}
