import numpy as np
import pytest

from paramdoctor.signals import backbone_drift, early_update_ratio, grad_norm_change, lr_cut, update_ratio_band


def test_update_ratio_band_uses_second_half_and_ignores_frozen_zeros():
    x = np.arange(1, 101, dtype=float)
    curves = {
        "head": (x, np.r_[np.full(50, 1.0), np.full(50, 1e-3)]),
        "backbone.layer4": (x, np.r_[np.zeros(60), np.full(40, 1e-4)]),
        "frozen": (x, np.zeros(100)),
    }
    band = update_ratio_band(curves)
    assert band.groups == 2
    assert band.highest == pytest.approx(1e-3) and band.highest_group == "head"
    assert band.lowest == pytest.approx(1e-4) and band.lowest_group == "backbone.layer4"
    assert update_ratio_band({"frozen": (x, np.zeros(100))}) is None


def test_grad_norm_change_explosion_collapse_and_steady():
    rng = np.random.default_rng(0)
    s = np.arange(1, 501, dtype=float)
    noise = np.exp(0.2 * rng.standard_normal(s.size))
    exploding = 2.0 * np.where(s > 300, 10 ** ((s - 300) / 50), 1.0) * noise
    e = grad_norm_change(s, exploding)
    assert e.log10_growth > 3 and e.held > 50 and 300 < e.onset < 420
    vanishing = 1.5 * 10 ** (-s / 100) * noise
    v = grad_norm_change(s, vanishing)
    assert v.log10_change < -3.5 and v.held == 0
    steady = grad_norm_change(s, 1.0 * noise)
    assert abs(steady.log10_change) < 0.3 and steady.log10_growth < 0.5
    assert grad_norm_change(s[:10], noise[:10]) is None


def test_backbone_drift_excludes_the_head():
    x = np.arange(10, 110, 10, dtype=float)
    curves = {
        "head": (x, np.linspace(0, 3.0, 10)),
        "backbone.layer3": (x, np.linspace(0, 0.05, 10)),
        "backbone.layer4": (x, np.linspace(0, 0.9, 10)),
    }
    d = backbone_drift(curves, threshold=0.5)
    assert d.group == "backbone.layer4" and d.highest == pytest.approx(0.9) and d.head == pytest.approx(3.0)
    assert d.groups == 2 and d.onset == 60.0
    assert backbone_drift({"head": (x, x)}) is None


def test_early_update_ratio_takes_the_largest_group_median_of_the_first_steps():
    steps = np.arange(1.0, 101.0)
    curves = {
        "head": (steps, np.where(steps <= 10, 0.3, 1e-4)),  # huge first steps, then dead
        "block1": (steps, np.full(100, 0.02)),
        "frozen": (steps, np.zeros(100)),
    }
    assert early_update_ratio(curves) == ("head", pytest.approx(0.3))
    assert early_update_ratio({"frozen": (steps, np.zeros(100))}) is None


def test_lr_cut_brings_the_first_updates_to_the_target_within_bounds():
    assert lr_cut(0.3) == pytest.approx(0.033)  # 1e-2 / 0.3, written with two digits
    assert lr_cut(0.05) == 0.1  # never milder than 10x after a blow-up
    assert lr_cut(50.0) == 1e-3  # never harsher than 1000x
    assert lr_cut(None) == 0.1 and lr_cut(0.0) == 0.1  # no telemetry: the classic 10x
