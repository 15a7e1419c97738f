"""Ablation pieces on fixed numbers: the paired statistics match scipy, variants, time to best, the chart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from paramdoctor.config import load_config
from paramdoctor.errors import InputError
from paramdoctor.experiments.ablate import (
    FULL,
    INGREDIENTS,
    MATTERS,
    NEEDS_SEEDS,
    WITHIN_NOISE,
    mean_std,
    paired_delta,
    parse_drop,
    plan,
    plot_ablation,
    time_to_best,
)


def test_the_paired_delta_matches_scipy_and_a_clear_drop_matters():
    full = {1: 0.90, 2: 0.92, 3: 0.91, 4: 0.93}
    off = {1: 0.85, 2: 0.88, 3: 0.86, 4: 0.87}
    d = np.array([off[s] - full[s] for s in full])
    got = paired_delta(full, off, mode="max")
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
    assert got["n"] == 4
    assert got["mean"] == pytest.approx(d.mean())
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert got["p_value"] == pytest.approx(stats.ttest_rel(list(off.values()), list(full.values())).pvalue)
    assert got["verdict"] == MATTERS and got["effect"] == "hurts"  # accuracy fell with the ingredient off


def test_a_difference_whose_ci_straddles_zero_is_within_noise():
    full = {1: 0.90, 2: 0.80, 3: 0.85}
    off = {1: 0.92, 2: 0.78, 3: 0.86}
    got = paired_delta(full, off)
    assert got["ci_low"] < 0 < got["ci_high"]
    assert got["verdict"] == WITHIN_NOISE and got["effect"] is None
    assert got["p_value"] == pytest.approx(stats.ttest_rel([0.92, 0.78, 0.86], [0.90, 0.80, 0.85]).pvalue)


def test_pairs_only_shared_seeds_and_a_lower_loss_helps():
    full = {1: 0.50, 2: 0.52, 3: 0.49, 9: 5.0}  # seed 9 has no partner: left out
    off = {1: 0.40, 2: 0.43, 3: 0.38}
    got = paired_delta(full, off, mode="min")
    assert got["n"] == 3 and got["mean"] == pytest.approx(-0.1)
    assert got["verdict"] == MATTERS and got["effect"] == "helps"


def test_one_seed_gives_a_difference_but_no_ci_or_p():
    got = paired_delta({42: 0.9}, {42: 0.8})
    assert got["mean"] == pytest.approx(-0.1)
    assert got["ci_low"] is None and got["p_value"] is None and got["verdict"] == NEEDS_SEEDS


def test_identical_runs_are_within_noise_with_p_1():
    got = paired_delta({1: 0.9, 2: 0.8}, {1: 0.9, 2: 0.8})
    assert got["mean"] == 0 and (got["ci_low"], got["ci_high"]) == (0, 0)
    assert got["p_value"] == 1.0 and got["verdict"] == WITHIN_NOISE


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(1.0), "n": 3}
    assert mean_std([0.5, None]) == {"mean": 0.5, "std": None, "n": 1}


def test_time_to_best_sums_epoch_times_up_to_the_best_epoch():
    history = [{"epoch": e, "epoch/time_s": t} for e, t in ((1, 1.5), (2, 2.0), (3, 4.0))]
    assert time_to_best(history, 2) == pytest.approx(3.5)
    assert time_to_best(history, None) is None


def test_the_default_drop_is_every_ingredient_the_base_has():
    base = load_config(None, ["trainer.label_smoothing=0.1", "scheduler.warmup_epochs=1"])
    variants, skipped = plan(base, None)
    names = [v.name for v in variants]
    assert names[0] == FULL and variants[0].config == base
    # defaults: trained from scratch (backbone lr = lr) and no clipping
    assert {s["ingredient"] for s in skipped} == {"discriminative_lr", "gradient_clip"}
    assert all(s["reason"].startswith("no-op") for s in skipped)
    assert set(names[1:]) == set(INGREDIENTS) - {"discriminative_lr", "gradient_clip"}
    by = {v.name: v.config for v in variants}
    assert by["augment"].data.augment is False and by["weight_decay"].optimizer.weight_decay == 0
    assert by["schedule"].scheduler.name == "constant" and by["schedule"].scheduler.warmup_epochs == 0
    assert by["warmup"].scheduler.warmup_epochs == 0 and by["warmup"].scheduler.name == base.scheduler.name
    assert by["label_smoothing"].trainer.label_smoothing == 0
    assert by["early_stopping"].early_stopping.enabled is False
    # every variant differs from the base in its ingredient only
    assert by["augment"].model_copy(update={"data": base.data}) == base


def test_warmup_and_smoothing_are_no_ops_when_the_base_lacks_them_and_clip_is_not_when_set():
    base = load_config(None, ["trainer.gradient_clip_val=1.0", "optimizer.backbone_lr=1e-4"])
    variants, skipped = plan(base, ["warmup", "label_smoothing", "gradient_clip", "discriminative_lr"])
    assert [s["ingredient"] for s in skipped] == ["warmup", "label_smoothing"]
    by = {v.name: v.config for v in variants}
    assert by["gradient_clip"].trainer.gradient_clip_val is None
    assert by["discriminative_lr"].optimizer.backbone_lr == base.optimizer.lr


def test_an_unknown_ingredient_is_one_line_naming_the_valid_ones():
    with pytest.raises(InputError) as info:
        parse_drop("augment,dropout")
    message = str(info.value)
    assert "'dropout'" in message and "\n" not in message
    assert all(name in message for name in INGREDIENTS)
    assert parse_drop(" augment , weight_decay,augment") == ["augment", "weight_decay"]


def test_the_chart_is_a_png(tmp_path):
    payload = {
        "monitor": "val/acc",
        "seeds": [1, 2],
        "variants": [
            {"name": FULL, "best": {"mean": 0.9, "std": 0.01, "n": 2}, "delta": None},
            {"name": "augment", "best": {"mean": 0.8, "std": 0.02, "n": 2}, "delta": {"verdict": MATTERS}},
            {"name": "weight_decay", "best": {"mean": None, "std": None, "n": 0}, "delta": {"verdict": NEEDS_SEEDS}},
        ],
    }
    path = plot_ablation(payload, tmp_path / "a" / "ablation.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
