import numpy as np
import pytest

from paramdoctor.signals import best_point, divergence_onset, generalization_gap, oscillation


def test_best_point_min_and_max_and_first_of_ties():
    x = np.arange(1, 11, dtype=float)
    v = np.array([5, 4, 3, 2, 2, 3, 4, 5, 6, 7], dtype=float)
    b = best_point(x, v, "min")
    assert (b.x, b.value, b.index, b.after) == (4.0, 2.0, 3, 6)
    assert b.position == pytest.approx(0.4)
    assert best_point(x, -v, "max").x == 4.0
    assert best_point(x, [np.nan] * 10, "min") is None
    with pytest.raises(ValueError):
        best_point(x, v, "best")


def test_best_point_skips_nan():
    b = best_point([1, 2, 3], [np.nan, 0.5, 0.7], "min")
    assert b.x == 2.0 and b.n == 2


def _u_shaped(noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.arange(1, 26, dtype=float)
    train = (0.02 + 1.2 * np.exp(-0.3 * x)) * (1 + 0.01 * rng.standard_normal(x.size))
    val = (0.4 + 0.006 * (x - 8) ** 2) * (1 + noise * rng.standard_normal(x.size))
    return x, train, val


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_divergence_onset_on_a_u_shape(noise):
    x, train, val = _u_shaped(noise)
    d = divergence_onset(x, train, val)
    assert 6 <= d.best_x <= 10
    assert d.rise > 1.0 and d.train_drop > 0.5
    assert d.held >= 10
    assert d.onset == d.best_x + 1


def test_divergence_onset_on_a_monotone_decline_has_no_rise():
    x = np.arange(1, 21, dtype=float)
    d = divergence_onset(x, np.exp(-0.2 * x), 0.1 + np.exp(-0.2 * x))
    assert d.rise == pytest.approx(0.0, abs=1e-9) and d.held == 0
    assert divergence_onset(x[:3], x[:3], x[:3]) is None


def test_divergence_onset_ignores_one_noisy_point():
    x = np.arange(1, 21, dtype=float)
    val = 0.2 + np.exp(-0.3 * x)
    val[-1] *= 1.5  # one bad evaluation
    d = divergence_onset(x, np.exp(-0.2 * x), val)
    assert d.held <= 1


def test_generalization_gap_widening_versus_stable():
    rng = np.random.default_rng(1)
    x = np.arange(1, 25, dtype=float)
    train = 0.02 + np.exp(-0.18 * x)
    val = 0.55 + 0.6 * np.exp(-0.5 * x) + 0.01 * rng.standard_normal(x.size)
    g = generalization_gap(x, train, val, 0.995 - 0.5 * np.exp(-0.18 * x), 0.84 - 0.4 * np.exp(-0.5 * x))
    assert g.widening and g.acc_gap == pytest.approx(0.15, abs=0.02) and g.val_rise < 0.1
    stable = generalization_gap(x, train, train + 0.05)
    assert not stable.widening and stable.acc_gap is None
    assert stable.loss_gap == pytest.approx(0.05, abs=1e-6)
    assert generalization_gap(x[:4], train[:4], val[:4]) is None


def test_oscillation_separates_swinging_from_monotone_curves():
    rng = np.random.default_rng(2)
    x = np.arange(1, 21, dtype=float)
    trend = 0.8 + 0.9 * np.exp(-0.25 * x)
    swinging = trend + 0.2 * np.where(x % 2 == 0, 1.0, -1.0)
    o = oscillation(x, swinging)
    assert o.rel_amplitude > 0.1 and o.sign_change_fraction > 0.9 and o.held >= 5
    calm = oscillation(x, trend * (1 + 0.002 * rng.standard_normal(x.size)))
    assert calm.rel_amplitude < 0.01
    monotone = oscillation(x, trend)
    assert monotone.amplitude == 0.0 and monotone.held == 0
    rising = oscillation(x, 1 - trend, improving=+1)
    assert rising.amplitude == 0.0
    assert oscillation(x[:4], trend[:4]) is None


def test_best_point_measures_the_longest_wait_for_a_new_best():
    # new bests at indices 0, 1, 5 and 6 (the best): the run waited 4 evaluations once
    acc = [0.5, 0.6, 0.55, 0.58, 0.6, 0.7, 0.8, 0.75, 0.79, 0.78]
    b = best_point(range(1, 11), acc, "max")
    assert (b.index, b.longest_wait) == (6, 4)
    assert b.suggested_patience == 5  # outlasts the wait; a tenth of 10 points is only 1
    long_run = best_point(range(1, 101), np.linspace(1.0, 0.1, 100), "min")
    assert (long_run.longest_wait, long_run.suggested_patience) == (1, 10)
    assert best_point([1.0], [0.3], "min").longest_wait == 0


def test_a_significant_but_tiny_widening_is_measured_as_flat():
    x = np.arange(1, 41, dtype=float)
    train = 0.01 + np.exp(-0.3 * x)
    growing = generalization_gap(x, train, train + 0.3 + 0.004 * x)
    flat = generalization_gap(x, train, train + 0.4 + 0.0001 * x)
    assert growing.widening and growing.widened > 0.1
    assert flat.widening and flat.widened < 0.01  # the slope's bound is above zero, yet the gap grew 0.5%


def test_isotonic_is_scipys_isotonic_regression_bit_for_bit():
    """The trend oscillation measures against: scipy's numbers, ties, zeros' signs and both directions included."""
    from scipy.optimize import isotonic_regression

    from paramdoctor.signals.curves import isotonic

    rng = np.random.default_rng(7)
    curves = [np.array([2.0, 2.0]), np.array([1.0]), np.array([3.0, 1.0, 2.0, -0.0, 0.0, 5.0]), np.zeros(4)]
    for t in range(600):
        n = int(rng.integers(2, 40))
        noisy = np.cumsum(rng.normal(size=n)) * 10.0 ** int(rng.integers(-6, 6))
        curves += [noisy, np.round(noisy, 1), rng.integers(0, 3, size=n).astype(float)]
    for v in curves:
        for increasing in (True, False):
            ours = isotonic(v, increasing=increasing)
            theirs = np.asarray(isotonic_regression(v, increasing=increasing).x, dtype=float)
            assert ours.tobytes() == theirs.tobytes(), (v, increasing)
    assert isotonic(np.array([3.0, 1.0, 2.0]), increasing=True).tolist() == [2.0, 2.0, 2.0]
    assert isotonic(np.array([1.0, 3.0, 2.0]), increasing=False).tolist() == [2.0, 2.0, 2.0]
