import math

import pytest

from paramdoctor.signals import decay_strength


def test_common_recipes_pull_gently():
    sgd = decay_strength("sgd", lr=0.1, weight_decay=5e-4, momentum=0.9)
    adamw = decay_strength("adamw", lr=1e-3, weight_decay=0.05)
    assert sgd.shrink_per_step == pytest.approx(5e-4)
    assert adamw.shrink_per_step == pytest.approx(5e-5)
    assert not sgd.unstable and not adamw.unstable
    assert sgd.half_life_steps == pytest.approx(math.log(2) / 5e-4)


def test_momentum_amplifies_an_l2_pull_and_sets_the_stability_limit():
    res = decay_strength("SGD", lr=10.0, weight_decay=1.0, momentum=0.9)
    assert res.coupling == "L2"
    assert res.shrink_per_step == pytest.approx(100.0)
    assert res.stability_limit == pytest.approx(3.8)
    assert res.unstable and "diverges whatever the data" in res.verdict
    # below the limit it is still overwhelming, not unstable
    res = decay_strength("sgd", lr=1.0, weight_decay=1.0, momentum=0.9)
    assert not res.unstable and res.shrink_per_step == pytest.approx(10.0)


def test_decay_factor_brings_the_pull_to_the_target():
    res = decay_strength("adamw", lr=1.0, weight_decay=0.5, target=5e-4)
    assert res.weight_decay * res.decay_factor * res.lr == pytest.approx(5e-4)
    assert decay_strength("adamw", lr=1e-3, weight_decay=0.0).decay_factor == math.inf


def test_adam_l2_and_nonsense_cannot_be_judged():
    assert decay_strength("adam", lr=1e-3, weight_decay=1e-4) is None
    assert decay_strength("rmsprop", lr=1e-3, weight_decay=1e-4) is None
    assert decay_strength("sgd", lr=0.0, weight_decay=1e-4) is None
    assert decay_strength("sgd", lr=0.1, weight_decay=1e-4, momentum=1.0) is None
