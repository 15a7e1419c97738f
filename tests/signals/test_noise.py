import numpy as np
import pytest

from paramdoctor.signals import finite_xy, mad, noise_scale, rolling_median, smooth, smoothing_window


def test_noise_scale_recovers_white_noise_on_a_steep_trend():
    rng = np.random.default_rng(0)
    t = np.arange(200, dtype=float)
    curve = 3.0 * np.exp(-0.03 * t) + 0.05 * rng.standard_normal(t.size)
    assert noise_scale(curve) == pytest.approx(0.05, rel=0.25)


def test_noise_scale_of_a_clean_line_is_zero_and_short_curves_are_zero():
    assert noise_scale(np.linspace(0, 1, 50)) == pytest.approx(0.0, abs=1e-12)
    assert noise_scale([1.0, 2.0, 3.0]) == 0.0


def test_mad_ignores_outliers_and_nan():
    values = np.r_[np.ones(20), 1000.0, np.nan]
    assert mad(values) == 0.0


def test_smooth_reduces_noise_but_keeps_the_trend():
    rng = np.random.default_rng(1)
    t = np.arange(60, dtype=float)
    clean = 2.0 * np.exp(-0.08 * t) + 0.1
    noisy = clean + 0.08 * rng.standard_normal(t.size)
    smoothed = smooth(noisy)
    assert np.mean((smoothed - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


def test_smooth_leaves_clean_and_short_curves_alone_and_keeps_nan_in_place():
    clean = np.linspace(1.0, 0.0, 30)
    assert np.allclose(smooth(clean), clean)
    assert smoothing_window([1.0, 2.0, 3.0]) == 1
    with_nan = np.r_[np.linspace(2, 1, 10), np.nan, np.linspace(1, 0.5, 10)]
    out = smooth(with_nan)
    assert np.isnan(out[10]) and np.isfinite(np.delete(out, 10)).all()


def test_smoothing_window_grows_with_noise():
    rng = np.random.default_rng(2)
    t = np.arange(80, dtype=float)
    quiet = np.exp(-0.05 * t) + 0.002 * rng.standard_normal(t.size)
    loud = np.exp(-0.05 * t) + 0.1 * rng.standard_normal(t.size)
    assert smoothing_window(loud) > smoothing_window(quiet)
    assert smoothing_window(loud) % 2 == 1


def test_rolling_median_removes_a_single_spike_and_keeps_monotone_curves():
    values = np.r_[np.ones(10), 50.0, np.ones(10)]
    assert rolling_median(values, 2).max() == 1.0
    line = np.arange(15, dtype=float)
    assert np.array_equal(rolling_median(line, 3), line)


def test_finite_xy_drops_nonfinite_points():
    x, v = finite_xy([1, 2, 3, 4], [1.0, np.nan, np.inf, 2.0])
    assert x.tolist() == [1.0, 4.0] and v.tolist() == [1.0, 2.0]


def test_savgol_interp_is_scipys_filter_number_for_number():
    from scipy.signal import savgol_filter

    from paramdoctor.signals.noise import savgol_interp

    rng = np.random.default_rng(3)
    for _ in range(400):
        n = int(rng.integers(5, 300))
        window = int(rng.integers(2, n // 2 + 2)) * 2 + 1
        window = max(5, min(window, n if n % 2 else n - 1))
        values = np.cumsum(rng.normal(size=n)) * 10 ** rng.uniform(-6, 6) + rng.uniform(-3, 3)
        assert np.array_equal(savgol_interp(values, window), savgol_filter(values, window, 2, mode="interp"))
    with pytest.raises(ValueError, match="longer than the curve"):
        savgol_interp(np.ones(4), 5)


def test_median_is_numpys_median_number_for_number():
    from paramdoctor.signals.noise import median

    rng = np.random.default_rng(4)
    for n in [*range(1, 40), 101, 1000]:
        for kind in range(4):
            values = rng.normal(size=n) * 10 ** rng.uniform(-5, 5)
            if kind == 1:
                values = np.round(values)  # ties, and -0.0 next to 0.0
                values[::3] = -0.0
            if kind == 2:
                values[rng.integers(n)] = np.nan
            if kind == 3:
                values[rng.integers(n)] = np.inf
            got, expected = median(values), np.median(values)
            assert np.array_equal(got, expected, equal_nan=True) and np.signbit(got) == np.signbit(expected)
    assert median([3, 1, 2]) == 2.0  # not a float64 array: numpy does it


def test_savgol_coefficients_are_scipys():
    from scipy.signal import savgol_coeffs

    from paramdoctor.signals.noise import _savgol_coeffs

    for window in range(5, 402, 2):
        assert np.array_equal(_savgol_coeffs(window), savgol_coeffs(window, 2))


def test_spread_is_numpys_percentiles_number_for_number():
    from paramdoctor.signals.noise import spread_5_95

    rng = np.random.default_rng(5)
    for n in [*range(1, 60), 257, 1000]:
        values = rng.normal(size=n) * 10 ** rng.uniform(-6, 6)
        if n % 4 == 0:
            values = np.round(values)
        expected = float(np.percentile(values, 95) - np.percentile(values, 5))
        assert spread_5_95(values) == expected
    with_nan = np.r_[1.0, np.nan, 2.0, 3.0]
    assert np.isnan(spread_5_95(with_nan)) and np.isnan(np.percentile(with_nan, 95) - np.percentile(with_nan, 5))


def _short_curves(seed: int, count: int):
    rng = np.random.default_rng(seed)
    special = [np.zeros(6), np.r_[0.0, -0.0, 0.0, -0.0, 1.0], np.r_[1e308, -1e308, 1e308, -1e308, 1e308, 0.0],
               np.arange(8.0), np.r_[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]]
    curves = list(special)
    for i in range(count):
        n = int(rng.integers(2, 80))
        v = np.cumsum(rng.normal(size=n)) * 10.0 ** rng.uniform(-8, 8) + rng.normal() * 10.0 ** rng.uniform(-3, 3)
        if i % 3 == 0:
            v = np.round(v, 1)
        if i % 7 == 0:
            v[rng.integers(0, n)] = np.nan
        curves.append(v)
    return curves


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the +/-1e308 curve: numpy warns, both sides give inf
def test_short_curves_take_plain_float_paths_with_numpys_numbers(monkeypatch):
    """noise_scale and smoothing_window on short curves: the same bits as the numpy paths long curves take."""
    from paramdoctor.signals import noise

    curves = _short_curves(11, 1500)
    short = [(noise.noise_scale(v), noise.smoothing_window(v)) for v in curves]
    monkeypatch.setattr(noise, "SMALL", 0)  # every curve through numpy
    numpy_paths = [(noise.noise_scale(v), noise.smoothing_window(v)) for v in curves]
    for v, (a_scale, a_window), (b_scale, b_window) in zip(curves, short, numpy_paths):
        assert np.float64(a_scale).tobytes() == np.float64(b_scale).tobytes() and a_window == b_window, v
    for v in curves:  # and numpy itself: the MAD of the second differences, the 5-95% percentile range
        finite = v[np.isfinite(v)]
        if finite.size >= 4:
            second = np.diff(finite, n=2)
            second = second[np.isfinite(second)]
            expected = float(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0)) if second.size else 0.0
            assert noise._noise_scale_small(finite.tolist()) == expected
        if finite.size >= 2:
            expected = float(np.percentile(finite, 95) - np.percentile(finite, 5))
            assert noise._spread_small(sorted(finite.tolist())) == expected
