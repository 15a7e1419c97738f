"""Trend tests that account for noise: Mann-Kendall and Theil-Sen.

"Has the curve stopped moving?" is a statistical question. Comparing the last
value with the best one answers it badly (one noisy point decides), so these
use rank-based tests: Mann-Kendall (Kendall's tau of value against position)
for whether a trend exists, Theil-Sen for its size with a confidence interval.
Both are unchanged in their verdict by shifting or rescaling the curve.

Cost: Mann-Kendall (scipy's ``kendalltau``) is O(n log n) on every point.
Theil-Sen takes the median of all n(n-1)/2 pairwise slopes, O(n^2) in time
and memory (a million points would ask for terabytes), so above
``EXACT_LIMIT`` points it runs on the medians of ``EXACT_LIMIT`` equal
consecutive bins of the curve (:func:`thinned`): deterministic, linear in n,
and the exact estimator for every curve of up to ``EXACT_LIMIT`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paramdoctor.signals.noise import finite_xy

EXACT_LIMIT = 2_000  # points up to which Theil-Sen uses every pair; longer curves are binned to this many


def thinned(x, values, limit: int = EXACT_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` points standing for a curve: the medians (of x and of the value) of ``limit`` consecutive bins.

    The curve is returned as it is when it has ``limit`` points or fewer. Bin
    sizes differ by at most one (the first ``n % limit`` bins hold one more).
    """
    x, v = np.asarray(x, dtype=float), np.asarray(values, dtype=float)
    n = v.size
    if n <= limit:
        return x, v
    size, extra = divmod(n, limit)
    cut = extra * (size + 1)

    def medians(a: np.ndarray) -> np.ndarray:
        rest = np.median(a[cut:].reshape(-1, size), axis=1)
        return np.concatenate((np.median(a[:cut].reshape(extra, size + 1), axis=1), rest)) if extra else rest

    return medians(x), medians(v)


@dataclass(frozen=True)
class Trend:
    """A monotone trend estimate over ``n`` points.

    ``slope`` is per unit of x (per epoch or per step); ``slope_low`` and
    ``slope_high`` bound it with the requested confidence; ``p_value`` is the
    two-sided Mann-Kendall p-value (1.0 when the curve is constant).
    """

    n: int
    slope: float
    slope_low: float
    slope_high: float
    tau: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value <= alpha

    @property
    def direction(self) -> int:
        """+1 rising, -1 falling, 0 no clear direction (tau == 0)."""
        return int(np.sign(self.tau))


def trend_test(x, values, confidence: float = 0.95) -> Trend | None:
    """Mann-Kendall + Theil-Sen over the finite points; None with fewer than 3."""
    x, v = finite_xy(x, values)
    if v.size < 3:
        return None
    if np.ptp(v) == 0.0:
        return Trend(n=int(v.size), slope=0.0, slope_low=0.0, slope_high=0.0, tau=0.0, p_value=1.0)
    from scipy import stats

    tau, p_value = _mann_kendall(x, v)
    bx, bv = thinned(x, v)
    ts = stats.theilslopes(bv, bx, alpha=confidence)
    return Trend(
        n=int(v.size),
        slope=float(ts.slope),
        slope_low=float(ts.low_slope),
        slope_high=float(ts.high_slope),
        tau=float(tau),
        p_value=float(p_value),
    )


def _mann_kendall(x: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Kendall's tau of value against position and its two-sided p-value; (0, 1) when undefined."""
    from scipy import stats

    tau, p_value = stats.kendalltau(x, v)
    if not np.isfinite(tau):
        return 0.0, 1.0
    return float(tau), float(p_value)


@dataclass(frozen=True)
class Plateau:
    """Whether the tail of a curve has stopped improving, and for how long.

    ``held`` is the length (in points) of the longest trailing window over
    which Mann-Kendall finds no significant improvement; ``p_value`` and
    ``slope`` describe the trailing ``window`` points.
    """

    window: int
    p_value: float
    slope: float
    flat: bool
    held: int
    onset: float | None  # x where the flat stretch begins


def plateau(x, values, *, improving: int = -1, window: int = 5, alpha: float = 0.05, min_gain: float = 0.0) -> Plateau | None:
    """Plateau test on the tail of a curve.

    ``improving`` is -1 when lower is better (loss), +1 when higher is better
    (accuracy). A tail is flat when Mann-Kendall finds no significant trend in
    the improving direction, or the trend's (Theil-Sen) improvement over the
    tail is below ``min_gain`` of the curve's level (a loss creeping down 1%
    in five epochs is significant, and still flat); a significant trend the
    other way also counts as "not improving".
    """
    x, v = finite_xy(x, values)
    n = v.size
    if n < max(window, 3):
        return None
    def moving(xs: np.ndarray, vs: np.ndarray) -> bool:
        # the rank test first: the slope (Theil-Sen, quadratic in the window) only for a significant trend
        if vs.size < 3 or np.ptp(vs) == 0.0:
            return False
        tau, p_value = _mann_kendall(xs, vs)
        if not (p_value <= alpha and int(np.sign(tau)) == improving):
            return False
        t = trend_test(xs, vs)
        assert t is not None
        level = float(np.median(np.abs(vs))) or 1.0
        return improving * t.slope * float(xs[-1] - xs[0]) / level >= min_gain

    tail = trend_test(x[-window:], v[-window:])
    assert tail is not None
    flat = not moving(x[-window:], v[-window:])
    held = 0
    onset = None
    if flat:
        held = window
        for k in range(window + 1, min(n, 400) + 1):
            if moving(x[-k:], v[-k:]):
                break
            held = k
        onset = float(x[-held])
    return Plateau(window=window, p_value=tail.p_value, slope=tail.slope, flat=flat, held=held, onset=onset)


@dataclass(frozen=True)
class Improvement:
    """Whether a curve was still improving over its last ``window`` points.

    ``gain`` is the Theil-Sen improvement over the window as a fraction of the
    curve's level (positive = better). ``improving`` is a significant
    Mann-Kendall trend in the better direction (``p_value``, one-sided: the
    question has a direction) when the window has at least 5 points; for a shorter run no rank test can be significant,
    so it means every point of the window improved on the one before
    (``p_value`` is then None). ``held`` counts the improvements in a row at the
    end, ``best_at_end`` whether the best value lies in the last two points.
    """

    window: int
    slope: float
    gain: float
    p_value: float | None
    improving: bool
    best_at_end: bool
    held: int
    onset: float


def still_improving(x, values, *, improving: int = -1, window: int = 5, alpha: float = 0.05) -> Improvement | None:
    """Improvement over the last ``window`` points (fewer when the curve is shorter); None below 3 points."""
    x, v = finite_xy(x, values)
    if v.size < 3:
        return None
    window = max(3, min(window, v.size))
    xs, vs = x[-window:], v[-window:]
    t = trend_test(xs, vs)
    assert t is not None
    level = float(np.median(np.abs(vs))) or 1.0
    gain = improving * t.slope * float(xs[-1] - xs[0]) / level
    steps = np.diff(v) * improving
    stalled = np.flatnonzero(~(steps[::-1] > 0))
    held = int(stalled[0]) if stalled.size else int(steps.size)  # improvements in a row at the end
    if window >= 5:
        # "still improving?" is a one-sided question: half the two-sided p when the trend points the better way
        p_value: float | None = t.p_value / 2 if t.direction == improving else 1.0 - t.p_value / 2
        is_improving = bool(p_value <= alpha)
    else:
        p_value = None
        is_improving = held >= window - 1
    best = int(np.argmin(v) if improving < 0 else np.argmax(v))
    return Improvement(
        window=int(vs.size),
        slope=t.slope,
        gain=float(gain),
        p_value=p_value,
        improving=is_improving,
        best_at_end=best >= v.size - 2,
        held=held,
        onset=float(xs[0]),
    )
