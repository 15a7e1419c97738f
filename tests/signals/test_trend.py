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
