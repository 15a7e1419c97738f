import numpy as np

from paramdoctor.signals import plateau, still_improving, trend_test


def test_trend_test_finds_a_noisy_decline_and_bounds_its_slope():
    rng = np.random.default_rng(0)
    x = np.arange(1, 31, dtype=float)
    v = 2.0 - 0.05 * x + 0.05 * rng.standard_normal(x.size)
    t = trend_test(x, v)
    assert t.significant() and t.direction == -1
    assert t.slope_low <= -0.05 <= t.slope_high


def test_trend_test_on_pure_noise_is_not_significant_and_constant_is_flat():
    rng = np.random.default_rng(3)
    x = np.arange(40, dtype=float)
    assert not trend_test(x, rng.standard_normal(40)).significant()
    flat = trend_test(x, np.ones(40))
    assert flat.p_value == 1.0 and flat.direction == 0
    assert trend_test([1, 2], [1, 2]) is None


def test_plateau_on_a_curve_that_flattens():
    rng = np.random.default_rng(4)
    x = np.arange(1, 31, dtype=float)
    v = np.where(x < 12, 2.0 - 0.15 * x, 2.0 - 0.15 * 12) + 0.01 * rng.standard_normal(x.size)
    p = plateau(x, v, improving=-1, window=5)
    assert p.flat
    assert 12 <= p.held <= 22  # the flat stretch, not the whole run
    assert p.onset >= 9


def test_plateau_is_false_while_a_loss_still_falls_cleanly():
    x = np.arange(1, 21, dtype=float)
    p = plateau(x, np.exp(-0.1 * x), improving=-1, window=6)
    assert not p.flat and p.held == 0 and p.onset is None


def test_plateau_counts_a_worsening_tail_as_not_improving():
    x = np.arange(1, 16, dtype=float)
    p = plateau(x, 1.0 + 0.05 * x, improving=-1, window=5)
    assert p.flat


def test_still_improving_on_a_rising_accuracy_and_not_on_a_flat_one():
    rng = np.random.default_rng(5)
    x = np.arange(1, 21, dtype=float)
    rising = 0.5 + 0.02 * x + 0.003 * rng.standard_normal(x.size)
    r = still_improving(x, rising, improving=+1, window=6)
    assert r.improving and r.gain > 0.05 and r.best_at_end
    flat = 0.9 + 0.01 * rng.standard_normal(x.size)
    f = still_improving(x, flat, improving=+1, window=6)
    assert not f.improving
    assert still_improving(x[:2], rising[:2], window=5) is None


def test_still_improving_on_a_run_too_short_for_a_rank_test():
    x = np.array([1.0, 2.0, 3.0])
    short = still_improving(x, [0.59, 0.75, 0.82], improving=+1, window=5)
    assert short.window == 3 and short.p_value is None and short.improving and short.held == 2
    assert short.gain > 0.2 and short.best_at_end
    dipped = still_improving(x, [0.59, 0.82, 0.80], improving=+1, window=5)
    assert not dipped.improving and dipped.held == 0


# --- the fast paths give scipy's numbers, bit for bit ------------------------------


def _curves(seed: int, count: int, longest: int):
    """Random curves: trends, noise, plateaus, and ties (rounded values, repeated x)."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(3, longest))
        x = np.arange(n, dtype=float) + (0.0 if k % 7 else -np.repeat(np.arange(0, n, 2), 2)[:n] % 2)
        v = np.cumsum(rng.normal(size=n)) * 10 ** rng.uniform(-4, 4) - rng.uniform(0, 1) * np.arange(n)
        if k % 3 == 0:
            v = np.round(v / (np.std(v) or 1.0), 1)
        if k % 11 == 0:
            v[n // 2 :] = v[n // 2]
        yield x, v


def test_mann_kendall_is_scipys_kendalltau():
    from scipy import stats

    from paramdoctor.signals.trend import _mann_kendall

    for x, v in _curves(5, 250, 160):
        tau, p_value = stats.kendalltau(x, v)
        expected = (0.0, 1.0) if not np.isfinite(tau) else (float(tau), float(p_value))
        assert _mann_kendall(x, v) == expected


def test_theil_sen_is_scipys_theilslopes():
    from scipy import stats

    from paramdoctor.signals.trend import theil_sen

    for x, v in _curves(6, 150, 80):
        res = stats.theilslopes(v, x, alpha=0.95)
        expected = (float(res.slope), float(res.low_slope), float(res.high_slope))
        got = theil_sen(x, v, 0.95)
        assert got == expected or np.array_equal(got, expected, equal_nan=True)


def _plateau_by_scipy(x, values, *, improving, window, alpha=0.05, min_gain=0.0):
    """The plateau test as it was written first: every window re-ranked by scipy."""
    from scipy import stats

    from paramdoctor.signals.noise import finite_xy

    def trend(xs, vs):
        if np.ptp(vs) == 0.0:
            return 0.0, 0.0, 1.0
        tau, p_value = stats.kendalltau(xs, vs)
        tau, p_value = (0.0, 1.0) if not np.isfinite(tau) else (float(tau), float(p_value))
        return float(stats.theilslopes(vs, xs, alpha=0.95).slope), tau, p_value

    def moving(xs, vs):
        if vs.size < 3 or np.ptp(vs) == 0.0:
            return False
        tau, p_value = stats.kendalltau(xs, vs)
        tau, p_value = (0.0, 1.0) if not np.isfinite(tau) else (tau, p_value)
        if not (p_value <= alpha and int(np.sign(tau)) == improving):
            return False
        level = float(np.median(np.abs(vs))) or 1.0
        return improving * trend(xs, vs)[0] * float(xs[-1] - xs[0]) / level >= min_gain

    x, v = finite_xy(x, values)
    slope, _, p_value = trend(x[-window:], v[-window:])
    flat = not moving(x[-window:], v[-window:])
    held = 0
    if flat:
        held = window
        for k in range(window + 1, min(v.size, 400) + 1):
            if moving(x[-k:], v[-k:]):
                break
            held = k
    return flat, held, p_value, slope


def test_plateau_counts_every_window_as_scipy_would():
    for k, (x, v) in enumerate([*_curves(7, 60, 90), *_curves(8, 2, 430)]):
        window = 3 + k % 6
        if v.size < window:
            continue
        improving = -1 if k % 2 else 1
        p = plateau(x, v, improving=improving, window=window, min_gain=0.02 * (k % 3))
        assert (p.flat, p.held, p.p_value, p.slope) == _plateau_by_scipy(
            x, v, improving=improving, window=window, min_gain=0.02 * (k % 3)
        )


def test_exact_p_values_and_the_normal_quantile_are_scipys():
    from scipy import stats

    from paramdoctor.signals.trend import _exact_p, _normal_ppf

    x = np.arange(40, dtype=float)
    for n in (3, 4, 5, 8, 13, 21, 33, 34, 40):
        tot = n * (n - 1) // 2
        for dis in sorted({0, 1, 2, tot // 4, tot // 3, tot // 2, tot - 2, tot - 1, tot}):
            if n > 33 and min(dis, tot - dis) > 1:
                continue  # scipy uses the normal approximation there, and so does _kendall
            order = list(range(n))  # a permutation with exactly `dis` inversions (its Lehmer code)
            perm, left = [], dis
            for i in range(n):
                take = min(left, n - 1 - i)
                perm.append(order.pop(take))
                left -= take
            assert _exact_p(n, dis) == float(stats.kendalltau(x[:n], np.asarray(perm, dtype=float)).pvalue)
    for q in (0.005, 0.025, 0.05, 0.3):
        assert _normal_ppf(q) == float(stats.norm.ppf(q))
