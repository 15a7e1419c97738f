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

Speed: a diagnosis runs these tests dozens of times on curves of a few dozen
points, where scipy's per-call overhead (argument checks, NaN policy,
distribution objects) costs ten times the arithmetic. Both tests are
therefore computed here with scipy's own formulas, in the same order, giving
the same numbers bit for bit (``tests/signals/test_trend.py`` compares them
with ``scipy.stats.kendalltau`` and ``theilslopes``); Kendall's tau on curves
longer than ``PAIRWISE_LIMIT`` points still goes to scipy, whose O(n log n)
count beats the pairwise one there. :func:`plateau` counts the pairs of every
trailing window at once instead of re-ranking each window.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from paramdoctor.signals.noise import finite_xy, median

EXACT_LIMIT = 2_000  # points up to which Theil-Sen uses every pair; longer curves are binned to this many
PAIRWISE_LIMIT = 150  # points up to which Kendall's tau counts pairs here rather than in scipy
PLATEAU_LIMIT = 400  # the longest trailing window :func:`plateau` tests


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
    tau, p_value = _mann_kendall(x, v)
    bx, bv = thinned(x, v)
    slope, low, high = theil_sen(bx, bv, confidence)
    return Trend(
        n=int(v.size),
        slope=float(slope),
        slope_low=float(low),
        slope_high=float(high),
        tau=float(tau),
        p_value=float(p_value),
    )


def _mann_kendall(x: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Kendall's tau of value against position and its two-sided p-value; (0, 1) when undefined.

    ``scipy.stats.kendalltau``'s numbers (tau-b; the exact p-value without
    ties up to 33 points, else the tie-corrected normal approximation).
    """
    n = int(v.size)
    if n > PAIRWISE_LIMIT or n < 2:
        from scipy import stats

        tau, p_value = stats.kendalltau(x, v)
    else:
        dis, xtie, ytie, ntie = _pair_counts(x, v)
        x0, x1 = _tie_sums(x) if xtie else (0, 0)
        y0, y1 = _tie_sums(v) if ytie else (0, 0)
        tau, p_value = _kendall(dis, xtie, ytie, ntie, x0, x1, y0, y1, n=n)
    if not np.isfinite(tau):
        return 0.0, 1.0
    return float(tau), float(p_value)


def _pair_counts(x: np.ndarray, v: np.ndarray) -> tuple[int, int, int, int]:
    """(discordant pairs, pairs tied in x, pairs tied in v, pairs tied in both), each pair i < j counted once."""
    n = x.size
    i, j = _upper_pairs(n)
    sx = np.sign(x[j] - x[i])
    sv = np.sign(v[j] - v[i])
    tx, tv = sx == 0, sv == 0
    return int(np.count_nonzero(sx * sv < 0)), int(np.count_nonzero(tx)), int(np.count_nonzero(tv)), int(np.count_nonzero(tx & tv))


@functools.lru_cache(maxsize=64)
def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _tie_sums(a: np.ndarray) -> tuple[int, int]:
    """scipy's tie terms of one variable: sums over its groups of equal values of c(c-1)(c-2) and c(c-1)(2c+5)."""
    c = _repeats(a)
    if not c.size:
        return 0, 0
    return int((c * (c - 1.0) * (c - 2)).sum()), int((c * (c - 1.0) * (2 * c + 5)).sum())


def _repeats(a: np.ndarray) -> np.ndarray:
    """The sizes (int64) of the groups of equal values that have more than one member."""
    s = np.sort(a)
    change = np.flatnonzero(s[1:] != s[:-1])
    if change.size == s.size - 1:
        return np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.concatenate(([0], change + 1, [s.size]))).astype(np.int64)
    return sizes[sizes > 1]


def _kendall(dis: int, xtie: int, ytie: int, ntie: int, x0: int, x1: int, y0: int, y1: int, *, n: int) -> tuple[float, float]:
    """Tau-b and the two-sided p-value from the pair counts, by ``scipy.stats.kendalltau``'s formulas (NaN when undefined)."""
    tot = (n * (n - 1)) // 2
    if xtie == tot or ytie == tot:
        return math.nan, math.nan
    con_minus_dis = tot - xtie - ytie + ntie - 2 * dis
    tau = con_minus_dis / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
    tau = np.minimum(1.0, max(-1.0, tau))
    if xtie == 0 and ytie == 0 and (n <= 33 or min(dis, tot - dis) <= 1):
        return float(tau), _exact_p(n, dis)
    from scipy import special

    m = n * (n - 1.0)
    var = (m * (2 * n + 5) - x1 - y1) / 18 + (2 * xtie * ytie) / m + x0 * y0 / (9 * m * (n - 2))
    z = con_minus_dis / np.sqrt(var)
    return float(tau), float(2 * special.ndtr(-np.abs(z)))


@functools.lru_cache(maxsize=8192)
def _exact_p(n: int, dis: int) -> float:
    """The exact two-sided p-value of Kendall's tau for ``n`` untied points with ``dis`` discordant pairs.

    scipy's recursion (Kendall, *Rank Correlation Methods*, 1970) step by step,
    as ``scipy.stats.kendalltau`` computes it (a pure function of the two
    counts, so it is kept per (n, dis)).
    """
    tot = (n * (n - 1)) // 2
    c = int(min(tot - dis, dis))  # the distribution is symmetric: work in the left tail
    if n <= 2:
        prob = 1.0
    elif c == 0:
        prob = 2.0 / math.factorial(n) if n < 171 else 0.0
    elif c == 1:
        prob = 2.0 / math.factorial(n - 1) if n < 172 else 0.0
    elif 4 * c == n * (n - 1):
        prob = 1.0
    elif n < 171:
        counts = np.zeros(c + 1)
        counts[0:2] = 1.0
        for j in range(3, n + 1):
            counts = np.cumsum(counts)
            if j <= c:
                counts[j:] -= counts[: c + 1 - j]
        prob = 2.0 * np.sum(counts) / math.factorial(n)
    else:
        counts = np.zeros(c + 1)
        counts[0:2] = 1.0
        for j in range(3, n + 1):
            counts = np.cumsum(counts) / j
            if j <= c:
                counts[j:] -= counts[: c + 1 - j]
        prob = np.sum(counts)
    return float(np.clip(prob, 0, 1))


def theil_sen(x, y, confidence: float = 0.95) -> tuple[float, float, float]:
    """(slope, low, high): ``scipy.stats.theilslopes(y, x, alpha=confidence)``'s median slope and confidence bounds.

    The same arithmetic as scipy's, without its per-call overhead; curves whose
    x are all equal (no slope at all) go to scipy itself.
    """
    x = np.array(x, dtype=float, copy=True).ravel()
    y = np.array(y, dtype=float, copy=True).ravel()
    deltax = x[:, np.newaxis] - x
    deltay = y[:, np.newaxis] - y
    ahead = deltax > 0
    slopes = deltay[ahead] / deltax[ahead]
    if not slopes.size:
        from scipy import stats

        res = stats.theilslopes(y, x, alpha=confidence)
        return float(res.slope), float(res.low_slope), float(res.high_slope)
    slopes.sort()
    medslope = median(slopes)
    alpha = 1.0 - confidence if confidence > 0.5 else confidence
    z = _normal_ppf(alpha / 2.0)
    nt, ny = len(slopes), len(y)
    sigsq = 1 / 18.0 * (ny * (ny - 1) * (2 * ny + 5) - _repeat_term(x) - _repeat_term(y))
    try:
        sigma = np.sqrt(sigsq)
        upper = min(int(np.round((nt - z * sigma) / 2.0)), len(slopes) - 1)
        lower = max(int(np.round((nt + z * sigma) / 2.0)) - 1, 0)
        low, high = slopes[[lower, upper]]
    except (ValueError, IndexError):
        low, high = math.nan, math.nan
    return float(medslope), float(low), float(high)


def _repeat_term(a: np.ndarray) -> int:
    """Sen's tie correction of one variable: the sum over its groups of equal values of k(k-1)(2k+5)."""
    return sum(int(k) * (int(k) - 1) * (2 * int(k) + 5) for k in _repeats(a))


@functools.lru_cache(maxsize=16)
def _normal_ppf(q: float) -> float:
    """``scipy.stats.norm.ppf(q)`` for 0 < q < 1 (``ndtri(q) * scale + loc`` with scale 1, loc 0), without importing scipy.stats."""
    from scipy import special

    return float(special.ndtri(q) * 1.0 + 0.0)


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
    trailing: _TrailingKendall | None = None

    def moving(k: int) -> bool:
        # the rank test first: the slope (Theil-Sen, quadratic in the window) only for a significant trend
        xs, vs = x[-k:], v[-k:]
        if vs.size < 3 or np.ptp(vs) == 0.0:
            return False
        tau, p_value = trailing(k) if trailing is not None and k <= trailing.size else _mann_kendall(xs, vs)
        if not (p_value <= alpha and int(np.sign(tau)) == improving):
            return False
        t = tail if k == window else trend_test(xs, vs)
        assert t is not None
        level = float(median(np.abs(vs))) or 1.0
        return improving * t.slope * float(xs[-1] - xs[0]) / level >= min_gain

    tail = trend_test(x[-window:], v[-window:])
    assert tail is not None
    flat = not moving(window)
    held = 0
    onset = None
    if flat:
        held = window
        longest = min(n, PLATEAU_LIMIT)
        if longest > window:
            trailing = _TrailingKendall(x[-longest:], v[-longest:])
        for k in range(window + 1, longest + 1):
            if moving(k):
                break
            held = k
        onset = float(x[-held])
    return Plateau(window=window, p_value=tail.p_value, slope=tail.slope, flat=flat, held=held, onset=onset)


class _TrailingKendall:
    """Kendall's tau and p-value (as :func:`_mann_kendall` gives them) of every trailing window of one curve.

    The pairs are compared once; the counts of a window are those of the pairs
    whose first point lies inside it, summed from the end: O(n^2) for all n
    windows instead of O(n^2 log n) window by window.
    """

    def __init__(self, x: np.ndarray, v: np.ndarray) -> None:
        self.x, self.v, self.size = x, v, int(v.size)
        first, second = _upper_pairs(self.size)
        sx = np.sign(x[second] - x[first])
        sv = np.sign(v[second] - v[first])
        tx, tv = sx == 0, sv == 0

        def from_the_end(mask: np.ndarray) -> np.ndarray:
            per_first = np.bincount(first[mask], minlength=self.size)
            return np.cumsum(per_first[::-1])[::-1]

        self.dis, self.xtie, self.ytie, self.ntie = (from_the_end(m) for m in (sx * sv < 0, tx, tv, tx & tv))

    def __call__(self, k: int) -> tuple[float, float]:
        s = self.size - k
        xtie, ytie = int(self.xtie[s]), int(self.ytie[s])
        x0, x1 = _tie_sums(self.x[s:]) if xtie else (0, 0)
        y0, y1 = _tie_sums(self.v[s:]) if ytie else (0, 0)
        tau, p_value = _kendall(int(self.dis[s]), xtie, ytie, int(self.ntie[s]), x0, x1, y0, y1, n=k)
        if not np.isfinite(tau):
            return 0.0, 1.0
        return float(tau), float(p_value)


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
    level = float(median(np.abs(vs))) or 1.0
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
