"""Signals for sudden events on a curve: non-finite values, spikes, explosions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paramdoctor.signals.noise import as_array, finite_xy, median, rolling_median

_BLOCK_ROWS = 65_536  # windows whose median is taken at once: bounded memory on long curves


@dataclass(frozen=True)
class NonFinite:
    """The first NaN/inf of a curve.

    ``index``/``x`` locate it, ``kind`` is "nan", "inf" or "-inf", ``count``
    how many points are non-finite, ``last_finite`` the last finite value before it.
    """

    index: int
    x: float
    kind: str
    count: int
    last_finite: float | None


def first_nonfinite(x, values) -> NonFinite | None:
    """The first non-finite value, or None when every value is finite."""
    x, v = as_array(x), as_array(values)
    bad = np.nonzero(~np.isfinite(v))[0]
    if bad.size == 0:
        return None
    i = int(bad[0])
    before = v[:i][np.isfinite(v[:i])]
    value = v[i]
    kind = "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return NonFinite(
        index=i,
        x=float(x[i]),
        kind=kind,
        count=int(bad.size),
        last_finite=float(before[-1]) if before.size else None,
    )


@dataclass(frozen=True)
class Spikes:
    """Upward spikes of a curve against its local level.

    A spike is a point whose robust z-score against the centered rolling median
    exceeds ``z`` and whose ratio to that median exceeds ``min_ratio``. For a
    positive curve (a loss) the z-score is taken on log values, because
    mini-batch noise scales with the loss's level.
    ``count`` spikes were found among the ``n`` points examined (the first
    ``fraction`` of the curve); ``max_z`` and ``max_ratio`` describe the worst,
    ``onset`` is the x of the first.
    """

    n: int
    count: int
    max_z: float
    max_ratio: float
    onset: float | None
    held: int


def spikes(x, values, *, fraction: float = 1.0, half_width: int = 12, z: float = 6.0, min_ratio: float = 1.5) -> Spikes | None:
    """Count upward spikes in the first ``fraction`` of a curve; None with fewer than 10 points examined."""
    x, v = finite_xy(x, values)
    n = int(np.ceil(v.size * min(max(fraction, 0.0), 1.0)))
    if n < 10:
        return None
    # the local level uses the whole curve so the window is centred at the cut too
    level = rolling_median(v, half_width)[:n]
    xs, vs = x[:n], v[:n]
    # mini-batch noise on a loss is multiplicative: judge positive curves on a log scale
    if np.all(vs > 0) and np.all(level > 0):
        residual = np.log(vs) - np.log(level)
    else:
        residual = vs - level
    scale = 1.4826 * float(median(np.abs(residual - median(residual))))
    if scale <= 0.0:
        scale = float(np.max(np.abs(residual))) or 1.0
    zscores = residual / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(level > 0, vs / level, 1.0)
    hits = np.nonzero((zscores > z) & (ratio > min_ratio))[0]
    return Spikes(
        n=n,
        count=int(hits.size),
        max_z=float(np.max(zscores)),
        max_ratio=float(np.max(ratio)),
        onset=float(xs[hits[0]]) if hits.size else None,
        held=int(hits.size),
    )


@dataclass(frozen=True)
class Explosion:
    """Loss growing far above the lowest level it had reached.

    On the rolling median (single spikes removed): ``growth`` is the largest
    ratio of a point to the minimum before it, ``log10_growth`` its orders of
    magnitude, ``floor``/``peak`` the two values, ``held`` the number of points
    at or above ``factor`` times the running minimum, ``onset`` the first of them.
    """

    growth: float
    log10_growth: float
    floor: float
    peak: float
    held: int
    onset: float | None


def explosion(x, values, *, factor: float = 10.0, half_width: int = 2, rolling=rolling_median) -> Explosion | None:
    """Growth of a positive curve (a loss) over its running minimum; None with fewer than 4 finite points.

    ``rolling`` is :func:`~paramdoctor.signals.noise.rolling_median` or a memo
    of it (the engine computes each rolling median of a run once per diagnosis).
    """
    x, v = finite_xy(x, values)
    if v.size < 4:
        return None
    level = rolling(v, half_width)
    floor_so_far = np.minimum.accumulate(level)
    tiny = 1e-12
    ratio = level / np.maximum(floor_so_far, tiny)
    peak_i = int(np.argmax(ratio))
    growth = float(ratio[peak_i])
    above = np.nonzero(ratio >= factor)[0]
    return Explosion(
        growth=growth,
        log10_growth=float(np.log10(max(growth, tiny))),
        floor=float(floor_so_far[peak_i]),
        peak=float(level[peak_i]),
        held=int(above.size),
        onset=float(x[above[0]]) if above.size else None,
    )



@dataclass(frozen=True)
class IsolatedSpikes:
    """Points of a curve that jump far above their neighbours and come back: a loss that spikes.

    A spike is a point at least ``ratio`` times the median of its neighbours
    (``half_width`` on each side, itself left out) that is also higher than
    the point before it (the steep fall at the start of training is not a
    spike). ``count`` spikes, the worst ``max_ratio``, ``onset`` the x of the
    first; ``held`` is ``count`` (the persistence count).
    """

    n: int
    count: int
    max_ratio: float
    onset: float | None
    held: int


def isolated_spikes(x, values, *, ratio: float = 3.0, half_width: int = 2) -> IsolatedSpikes | None:
    """Isolated upward spikes of a positive curve; None with fewer than 5 finite points or a non-positive value."""
    x, v = finite_xy(x, values)
    n = v.size
    if n < 5 or np.any(v <= 0):
        return None
    ratios = np.ones(n)
    rising = np.zeros(n, dtype=bool)
    rising[1:] = v[1:] > v[:-1]
    h = max(int(half_width), 0)
    inner = np.arange(h, n - h) if h > 0 else np.arange(0)
    inner = inner[rising[inner]]
    if inner.size:  # points with h neighbours on each side: their medians in bounded blocks, as arrays
        from numpy.lib.stride_tricks import sliding_window_view

        around = sliding_window_view(v, 2 * h + 1)
        keep = np.r_[0:h, h + 1 : 2 * h + 1]  # the window less its centre
        for block in np.array_split(inner, max(1, inner.size // _BLOCK_ROWS)):
            ratios[block] = v[block] / np.median(around[block - h][:, keep], axis=1)
    for i in np.flatnonzero(rising).tolist():  # the first and last h points: fewer neighbours on one side
        if h <= i < n - h and h > 0:
            continue
        neighbours = np.concatenate((v[max(0, i - h) : i], v[i + 1 : i + 1 + h]))
        ratios[i] = v[i] / float(median(neighbours))
    hits = np.nonzero(ratios >= ratio)[0]
    return IsolatedSpikes(
        n=int(n),
        count=int(hits.size),
        max_ratio=float(np.max(ratios)),
        onset=float(x[hits[0]]) if hits.size else None,
        held=int(hits.size),
    )
