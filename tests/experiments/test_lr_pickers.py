"""The pickers on curves whose right answer is known: clean, noisy, flat, too short; valley is fastai's to the index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paramdoctor.experiments.lr_pickers import (
    DEFAULT_PICKER,
    PICKERS,
    Curve,
    ema,
    first_divergence,
    minimum,
    robust,
    steepest,
    suggest_all,
    valley,
)

STEPS = 200


def sweep_curve(rng=None, *, sigma=0.0, c=-3.0, w=0.3, blow=-1.0, l0=2.3, l_end=0.3, flat=False, steps=STEPS):
    """A 200-step sweep over 1e-7..10: plateau l0, logistic descent centred on 10**c, blow-up from 10**blow.

    Returns the curve (cut where the sweep would stop) and the noiseless band (steepest point, minimum) in log10 LR.
    """
    x = np.linspace(-7, 1, steps)

    def f(x):
        up = l0 * np.exp(np.minimum((x - blow) / 0.15, 50))
        return (l0 if flat else l_end + (l0 - l_end) / (1 + np.exp((x - c) / w))) + up

    losses = f(x)
    if sigma:
        losses = np.maximum(losses + sigma * (l0 - l_end) * rng.standard_t(3, size=steps) / math.sqrt(3), 1e-3)
    stop = first_divergence(ema(losses))
    keep = steps if stop is None else stop + 1
    fine = np.linspace(-7, 1, 20001)
    values = f(fine)
    m = int(np.argmin(values))
    s = int(np.argmin(np.gradient(values, fine)[: m + 1]))
    lrs = 10 ** x[:keep]
    return Curve(lrs, losses[:keep], ema(losses[:keep]), steps), (fine[s], fine[m])


def test_ema_is_fastais_bias_corrected_average():
    losses = [2.0, 1.0, 4.0]
    got = ema(losses, beta=0.9)
    avg, expected = 0.0, []
    for i, v in enumerate(losses):
        avg = 0.9 * avg + 0.1 * v
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    assert got == pytest.approx(expected)
    assert got[0] == 2.0  # bias correction: the first smoothed value is the first loss


def test_first_divergence_is_the_first_point_above_four_times_the_best_so_far():
    assert first_divergence([3.0, 2.0, 1.0, 3.9, 4.1, 9.0]) == 4
    assert first_divergence([3.0, 2.0, 1.0, 3.9]) is None
    assert first_divergence([]) is None


def test_on_a_clean_curve_every_picker_answers_and_robust_lands_in_the_middle_of_the_good_band():
    curve, (x_steep, x_min) = sweep_curve()
    answers = suggest_all(curve)
    assert list(answers) == list(PICKERS) and DEFAULT_PICKER == "robust"
    assert all(a.ok for a in answers.values())
    got = math.log10(answers["robust"].lr)
    assert x_steep <= got <= x_min
    assert abs(got - (x_steep + x_min) / 2) < 0.25
    # the EMA lags: everything read from it sits to the right of the raw curve's features
    assert math.log10(answers["steepest"].lr) > x_steep


def test_a_noisy_curve_fools_steepest_but_not_robust():
    rng = np.random.default_rng(7)
    curve, (x_steep, x_min) = sweep_curve(rng, sigma=0.4)
    answer = (x_steep + x_min) / 2
    assert abs(math.log10(robust(curve).lr) - answer) < 0.5
    assert abs(math.log10(steepest(curve).lr) - answer) > 1.0  # one noisy stretch made the steepest gradient


def test_over_many_noisy_draws_robust_is_right_far_more_often_than_steepest():
    rng = np.random.default_rng(3)
    hits = {"robust": 0, "steepest": 0}
    draws = 40
    for _ in range(draws):
        c = rng.uniform(-5, -2.5)
        curve, (x_steep, x_min) = sweep_curve(rng, sigma=0.3, c=c, w=rng.uniform(0.15, 0.5), blow=c + rng.uniform(1.2, 2.5))
        answer = (x_steep + x_min) / 2
        for name in hits:
            lr = PICKERS[name](curve).lr
            hits[name] += lr is not None and abs(math.log10(lr) - answer) <= 0.5
    assert hits["robust"] >= 0.85 * draws
    assert hits["steepest"] <= 0.6 * draws


def test_a_flat_noisy_curve_gets_no_suggestion_from_robust_while_steepest_still_names_one():
    rng = np.random.default_rng(0)
    curve, _ = sweep_curve(rng, sigma=0.05, flat=True, blow=5.0)  # no descent, no blow-up in range
    got = robust(curve)
    assert got.lr is None and "never clearly descended" in got.reason
    assert steepest(curve).lr is not None  # the failure mode the stability check guards against


def test_a_loss_that_only_rises_has_its_minimum_at_the_start_and_no_suggestion():
    lrs = np.logspace(-2, 1, 60)
    losses = 1.0 + np.linspace(0, 2, 60) ** 2
    got = robust(Curve(lrs, losses, ema(losses), 60))
    assert got.lr is None and "lowest at the start" in got.reason


def test_a_sweep_that_diverged_almost_at_once_is_too_short_for_every_picker():
    lrs = np.logspace(0, 1, 8)
    losses = np.linspace(2, 1, 8)
    for name, suggestion in suggest_all(Curve(lrs, losses, ema(losses), 200)).items():
        assert suggestion.lr is None and "usable points" in suggestion.reason, name


def test_a_loss_still_falling_at_the_end_is_suggested_with_a_note():
    lrs = np.logspace(-6, -2, 100)
    x = np.log10(lrs)
    losses = 0.5 + 2.0 / (1 + np.exp((x + 3.5) / 0.4)) - 0.05 * (x + 6)
    got = robust(Curve(lrs, losses, ema(losses), 100))
    assert got.lr is not None and "still falling" in got.reason


def test_minimum_is_a_tenth_of_the_lowest_point_of_the_trimmed_ema():
    curve, _ = sweep_curve()
    smoothed = np.asarray(curve.smoothed)[STEPS // 10 : len(curve.lrs) - 5]
    lrs = np.asarray(curve.lrs)[STEPS // 10 : len(curve.lrs) - 5]
    assert minimum(curve).lr == pytest.approx(lrs[np.argmin(smoothed)] / 10)


def _fastai_valley(lrs, losses):
    """fastai.callback.schedule.valley as published (its loop, unchanged), for comparison."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def test_valley_is_fastais_algorithm_on_fastais_trimmed_curve():
    rng = np.random.default_rng(11)
    for trial in range(25):
        n = int(rng.integers(40, 120))
        lrs = np.logspace(-7, 1, n)
        raw = np.abs(rng.normal(size=n)).cumsum()[::-1] * rng.random() + rng.normal(size=n) * rng.random() * 3
        curve = Curve(lrs, raw, ema(raw), n)
        trimmed_lrs, trimmed = lrs[n // 10 : n - 5], np.asarray(curve.smoothed)[n // 10 : n - 5]
        assert valley(curve).lr == _fastai_valley(trimmed_lrs, trimmed), trial


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        robust(Curve([1e-3, 1e-2], [1.0], [1.0], 2))
