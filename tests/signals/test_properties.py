"""Invariances every signal must keep, checked with hypothesis on arbitrary curves."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from paramdoctor.signals import best_point, oscillation, plateau, smooth, trend_test

# values on a grid of 1/64 so affine maps with the scales below stay exact enough to keep ties as ties
grid_values = st.lists(st.integers(min_value=-4000, max_value=4000), min_size=6, max_size=60).map(
    lambda xs: np.asarray(xs, dtype=float) / 64.0
)
finite_values = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=80
).map(np.asarray)
scales = st.sampled_from([0.5, 2.0, 4.0, 8.0, 1024.0])
shifts = st.sampled_from([-100.0, -1.0, 0.0, 3.0, 1000.0])

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(grid_values, scales, shifts, st.sampled_from(["min", "max"]))
def test_best_point_is_unchanged_by_a_positive_affine_transform(values, a, b, mode):
    x = np.arange(1, values.size + 1, dtype=float)
    assert best_point(x, values, mode).index == best_point(x, a * values + b, mode).index


@FAST
@given(grid_values)
def test_best_point_of_the_negated_curve_swaps_min_and_max(values):
    x = np.arange(values.size, dtype=float)
    assert best_point(x, values, "min").index == best_point(x, -values, "max").index


@FAST
@given(grid_values, scales, shifts)
def test_plateau_verdict_is_unchanged_by_shifting_and_scaling(values, a, b):
    x = np.arange(1, values.size + 1, dtype=float)
    before = plateau(x, values, improving=-1, window=5)
    after = plateau(x, a * values + b, improving=-1, window=5)
    assert (before.flat, before.held) == (after.flat, after.held)
    assert np.isclose(before.p_value, after.p_value)


@FAST
@given(grid_values, scales, shifts)
def test_trend_direction_and_p_value_are_scale_free(values, a, b):
    x = np.arange(values.size, dtype=float)
    t1, t2 = trend_test(x, values), trend_test(x, a * values + b)
    assert t1.direction == t2.direction and np.isclose(t1.p_value, t2.p_value)
    assert np.isclose(t2.slope, a * t1.slope, rtol=1e-9, atol=1e-9)


@FAST
@given(finite_values)
def test_smoothing_never_produces_nan_from_finite_input(values):
    out = smooth(values)
    assert out.shape == values.shape and np.all(np.isfinite(out))


@FAST
@given(grid_values, scales, shifts)
def test_smoothing_is_affine_equivariant(values, a, b):
    assert np.allclose(smooth(a * values + b), a * smooth(values) + b, rtol=1e-7, atol=1e-6 * a)


@FAST
@given(grid_values, scales, shifts)
def test_oscillation_relative_measures_are_scale_free(values, a, b):
    x = np.arange(values.size, dtype=float)
    o1, o2 = oscillation(x, values), oscillation(x, a * values)
    assert np.isclose(o1.sign_change_fraction, o2.sign_change_fraction)
    assert np.isclose(o2.amplitude, a * o1.amplitude, rtol=1e-7, atol=1e-9)
    assert o1.held == o2.held
    assert oscillation(x, values + b).sign_change_fraction == o1.sign_change_fraction
