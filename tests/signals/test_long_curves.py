"""Signals on curves of a million points: linear time, bounded memory, and unchanged results on short curves.

Theil-Sen is quadratic in the number of points; above ``EXACT_LIMIT`` it runs
on binned medians. Up to the limit every signal is the exact estimator it
always was (the corpora's curves are far shorter).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from scipy import stats

from paramdoctor import signals
from paramdoctor.signals import trend

N = 1_000_000


def _long_curve(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.arange(1, n + 1, dtype=float)
    loss = 2.0 * np.exp(-3.0 * x / n) + 0.3 + 0.05 * rng.standard_normal(n)
    loss[rng.integers(0, n, 50)] *= 6.0  # a few spikes
    return x, np.abs(loss) + 0.01


def test_trend_and_spike_signals_on_a_million_points_are_fast_and_bounded():
    x, v = _long_curve()
    val = v[::-1] * 0.9 + 0.2
    tracemalloc.start()
    start = time.perf_counter()
    try:
        t = signals.trend_test(x, v)
        improving = signals.still_improving(x, v, window=300_000)
        flat = signals.plateau(x, v, window=5, min_gain=0.02)
        gap = signals.generalization_gap(x, v, val)
        turn = signals.divergence_onset(x, v, val)
        spikes = signals.isolated_spikes(x, v)
        early = signals.spikes(x, v, fraction=0.3)
        blow_up = signals.explosion(x, v, half_width=5)
        wobble = signals.oscillation(x, v)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # ~3 s alone on one core (with tracemalloc on); the bound is there to catch a quadratic pass (hours on a
    # million points), not to time anything: 23 s was seen on a 2-core machine at load 8
    assert elapsed < 90.0, f"{elapsed:.1f} s"
    assert t is not None and t.n == N and t.direction == -1 and t.slope_low <= t.slope <= t.slope_high < 0
    assert improving is not None and improving.window == 300_000 and improving.slope < 0
    assert flat is not None and gap is not None and turn is not None and wobble is not None
    assert spikes is not None and spikes.count >= 40 and early is not None and blow_up is not None


def _isolated_ratios_by_loop(v: np.ndarray, half_width: int) -> np.ndarray:
    """The definition, one point at a time."""
    ratios = np.ones(v.size)
    for i in range(1, v.size):
        neighbours = np.concatenate((v[max(0, i - half_width) : i], v[i + 1 : i + 1 + half_width]))
        if v[i] > v[i - 1]:
            ratios[i] = v[i] / float(np.median(neighbours))
    return ratios


def test_binned_theil_sen_above_the_limit_and_the_exact_estimators_below_it():
    x, v = _long_curve(n=50_000, seed=1)
    for n in (3, 7, 60, 500, trend.EXACT_LIMIT):
        got = signals.trend_test(x[:n], v[:n])
        exact = stats.theilslopes(v[:n], x[:n], alpha=0.95)
        tau, p_value = stats.kendalltau(x[:n], v[:n])
        assert (got.slope, got.slope_low, got.slope_high) == (exact.slope, exact.low_slope, exact.high_slope), n
        assert (got.tau, got.p_value) == (tau, p_value), n
    for n in (trend.EXACT_LIMIT + 1, 3_000, 50_000):
        got = signals.trend_test(x[:n], v[:n])
        bx, bv = trend.thinned(x[:n], v[:n])
        assert bx.size == trend.EXACT_LIMIT and bx[0] < bx[-1]
        binned = stats.theilslopes(bv, bx, alpha=0.95)
        assert (got.slope, got.slope_low, got.slope_high) == (binned.slope, binned.low_slope, binned.high_slope)
        assert got.tau == stats.kendalltau(x[:n], v[:n])[0]  # Mann-Kendall stays on every point
        if n <= 3_000:  # the exact estimator needs n^2 memory: only a short curve can be compared
            exact = stats.theilslopes(v[:n], x[:n]).slope
            assert got.slope == pytest.approx(exact, rel=0.05)
    for half_width in (1, 2, 5):  # isolated spikes: the vectorised windows give the definition's ratios
        w = v[:300]
        res = signals.isolated_spikes(np.arange(300.0), w, half_width=half_width)
        ratios = _isolated_ratios_by_loop(w, half_width)
        assert res.max_ratio == float(np.nanmax(ratios)) or np.isnan(res.max_ratio)
        assert res.count == int(np.count_nonzero(ratios >= 3.0))
