import numpy as np

from paramdoctor.signals import explosion, first_nonfinite, spikes


def test_first_nonfinite_finds_nan_and_inf():
    hit = first_nonfinite([1, 2, 3, 4, 5], [2.0, 1.5, np.inf, np.nan, np.nan])
    assert (hit.x, hit.kind, hit.count, hit.last_finite) == (3.0, "inf", 3, 1.5)
    assert first_nonfinite([1, 2], [np.nan, 1.0]).last_finite is None
    assert first_nonfinite([1, 2, 3], [1.0, 2.0, 3.0]) is None


def _step_loss(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1, dtype=float)
    return s, (0.1 + 2.2 * np.exp(-s / 60)) * np.exp(0.15 * rng.standard_normal(n))


def test_spikes_found_in_the_early_part_only():
    s, loss = _step_loss(0)
    spiked = loss.copy()
    spiked[[10, 30, 50]] *= 4.0
    spiked[350] *= 10.0  # late: outside the early fraction
    res = spikes(s, spiked, fraction=0.3)
    assert res.count == 3 and res.onset == 11.0 and res.max_ratio > 3


def test_no_spikes_in_ordinary_minibatch_noise():
    for seed in range(5):
        s, loss = _step_loss(seed)
        assert spikes(s, loss, fraction=0.3).count == 0
    assert spikes(s[:20], loss[:20], fraction=0.3) is None


def test_explosion_measures_growth_over_the_running_minimum():
    x = np.arange(1, 41, dtype=float)
    loss = np.r_[np.linspace(2.3, 0.3, 20), 0.3 * np.exp(0.4 * np.arange(1, 21))]
    res = explosion(x, loss, factor=10.0)
    assert res.growth > 100 and res.log10_growth > 2 and res.held >= 10
    assert 25 <= res.onset <= 30
    calm = explosion(x, np.linspace(2.3, 0.1, 40))
    assert calm.growth == 1.0 and calm.held == 0 and calm.onset is None


def test_explosion_ignores_a_single_spike():
    x = np.arange(1, 31, dtype=float)
    loss = np.linspace(2.0, 0.5, 30)
    loss[15] = 100.0
    assert explosion(x, loss).growth < 1.5
