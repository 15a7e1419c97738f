"""The anchors: each check fires on a record built to its documented condition and is silent on a clean run.

Also: categories always come from the vocabulary, and degenerate records
(missing, short, NaN, inf, percent accuracy, step-indexed) never raise.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.anchors import ANCHORS, CATEGORY_MAPS, EXPLAINERS, autotrainer, smdebug_rules
from paramdoctor.diagnosis import CATEGORIES
from paramdoctor.record import RunRecord, Series

EPOCHS = 20
SPE = 100  # optimizer steps per epoch in the clean record


def make(series: dict[str, tuple], *, x_unit: str = "epoch", meta: dict | None = None, config: dict | None = None) -> RunRecord:
    return RunRecord(
        series={k: Series(np.asarray(x, dtype=float), np.asarray(v, dtype=float)) for k, (x, v) in series.items()},
        x_unit=x_unit,
        meta=dict(meta or {}),
        config=dict(config or {}),
    )


def clean_curves() -> dict[str, tuple]:
    """A run that converges cleanly: every anchor must stay silent on it."""
    e = np.arange(1, EPOCHS + 1, dtype=float)
    train_loss = 0.3 + 1.7 * np.exp(-e / 6)  # falls by more than delta=0.01 and 0.1% every epoch
    train_acc = 0.95 - 0.45 * np.exp(-e / 4)  # 0.85 by epoch 7, rising every epoch
    steps = np.arange(1, EPOCHS * SPE + 1, dtype=float)
    tel = steps[9::10]
    return {
        "train/loss": (e, train_loss),
        "val/loss": (e, train_loss * 1.05),  # (val-train)/train = 0.05 < 0.1, falling every epoch
        "train/acc": (e, train_acc),
        "val/acc": (e, train_acc - 0.02),  # below 95%, never above train
        "epoch/lr/default": (e, np.full(EPOCHS, 1e-3)),
        "step/loss": (steps, 0.3 + 1.7 * np.exp(-steps / (6 * SPE))),
        "step/grad_norm": (steps, np.full(steps.size, 1.0)),
        "step/lr/default": (steps, np.full(steps.size, 1e-3)),
        "telemetry/stem/grad_norm": (tel, np.full(tel.size, 0.5)),
        "telemetry/block1/grad_norm": (tel, np.full(tel.size, 0.8)),
        "telemetry/head/grad_norm": (tel, np.full(tel.size, 1.0)),
        "telemetry/stem/update_ratio": (tel, np.full(tel.size, 1e-3)),
        "telemetry/stem/drift": (tel, np.linspace(0.0, 0.2, tel.size)),
    }


CLEAN_META = {"steps_per_epoch": SPE, "max_epochs": EPOCHS, "num_classes": 10}


def clean(**changes) -> RunRecord:
    curves = clean_curves()
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            curves.pop(key, None)
        else:
            curves[key] = value
    return make(curves, meta=CLEAN_META)


def train_only(values) -> RunRecord:
    """A log with one training-loss value per epoch and nothing else (no steps_per_epoch: each epoch one saved step)."""
    return make({"train/loss": epochs_with(values)})


def checks(name: str, record: RunRecord) -> dict[str, str]:
    return {check: category for check, category, _ in EXPLAINERS[name](record)}


def epochs_with(values) -> tuple:
    values = np.asarray(values, dtype=float)
    return (np.arange(1, values.size + 1, dtype=float), values)


# --- the registry --------------------------------------------------------------------------


def test_registry_names_three_anchors_with_vocabulary_categories():
    assert set(ANCHORS) == set(EXPLAINERS) == set(CATEGORY_MAPS) == {"smdebug", "autotrainer", "umlaut"}
    for mapping in CATEGORY_MAPS.values():
        assert set(mapping.values()) <= set(CATEGORIES)


@pytest.mark.parametrize("name", ["smdebug", "autotrainer", "umlaut"])
def test_clean_converging_run_is_silent(name):
    record = clean()
    assert EXPLAINERS[name](record) == []
    assert ANCHORS[name](record) == set()


# --- SageMaker Debugger ------------------------------------------------------------------------


def test_smdebug_loss_not_decreasing_fires_on_a_stalled_loss():
    rec = train_only(1.0 - 0.0002 * np.arange(10))  # falls 0.02% per epoch < diff_percent 0.1%
    assert checks("smdebug", rec)["LossNotDecreasing"] == "lr_too_low"


def test_smdebug_loss_not_decreasing_fires_on_a_rise_beyond_the_allowed_increase():
    rec = train_only([1.0, 0.9, 0.8, 0.88, 0.7])  # +10% > 5%
    fired = smdebug_rules.explain(rec)
    assert ("LossNotDecreasing", "lr_too_low") in [(c, k) for c, k, _ in fired]
    assert "rose 10%" in next(ev for c, _, ev in fired if c == "LossNotDecreasing")


def test_smdebug_loss_not_decreasing_tolerates_a_rise_within_increase_threshold():
    rec = train_only([1.0, 0.9, 0.8, 0.82, 0.7, 0.6])  # +2.5% <= 5%
    assert "LossNotDecreasing" not in checks("smdebug", rec)


def test_smdebug_loss_not_decreasing_reads_step_loss_at_the_default_save_interval():
    steps = np.arange(1, 2001, dtype=float)
    loss = np.where(steps < 1000, 2.0 - steps / 1000, 1.0)  # flat from step 1000 on
    loss[::7] += 5.0  # spikes on steps the hook does not save
    rec = clean(step__loss=(steps, loss), val__loss=None)  # no EVAL-mode loss: the rule reads TRAIN mode
    evidence = dict((c, ev) for c, _, ev in smdebug_rules.explain(rec))["LossNotDecreasing"]
    assert "step 1501" in evidence and "step 1001" in evidence


def test_smdebug_loss_not_decreasing_reads_eval_losses_first():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    val = clean_curves()["val/loss"][1].copy()
    val[12] = val[11] * 1.08  # one evaluation 8% above the previous (> 5%); the training loss keeps falling
    evidence = dict((c, ev) for c, _, ev in smdebug_rules.explain(clean(val__loss=(e, val))))["LossNotDecreasing"]
    assert evidence.startswith("val/loss (EVAL mode)") and "epoch 13" in evidence


def test_smdebug_overfit_fires_when_val_exceeds_train_by_ratio_threshold():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    train = clean_curves()["train/loss"][1]
    val = train * 1.05
    val[9] = train[9] * 1.2  # (val - train) / train = 0.2 > 0.1 once (patience 1)
    assert checks("smdebug", clean(val__loss=(e, val)))["Overfit"] == "overfitting"


def test_smdebug_overtraining_fires_on_a_validation_plateau():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    train = clean_curves()["train/loss"][1]
    val = np.maximum(train * 1.05, 0.9)  # stuck at 0.9 from epoch 5: no 0.01 improvement for 10 evaluations
    fired = checks("smdebug", clean(val__loss=(e, val)))
    assert fired["Overtraining"] == "overtrained"


def test_smdebug_overtraining_fires_on_a_training_plateau():
    rec = train_only([2.0, 1.5, 1.0, 0.995, 0.994, 0.993, 0.992, 0.991, 0.99])
    assert checks("smdebug", rec)["Overtraining"] == "overtrained"


def test_smdebug_vanishing_gradient_fires_below_threshold():
    tel = clean_curves()["telemetry/stem/grad_norm"][0]
    rec = clean(telemetry__stem__grad_norm=(tel, np.full(tel.size, 1e-9)))
    assert checks("smdebug", rec)["VanishingGradient"] == "gradients"


def test_smdebug_vanishing_gradient_reads_step_grad_norm():
    steps = np.arange(1, 2001, dtype=float)
    rec = clean(step__grad_norm=(steps, np.where(steps > 400, 1e-8, 1.0)))
    assert "VanishingGradient" in checks("smdebug", rec)


def test_smdebug_exploding_tensor_fires_on_nan_or_inf():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    val = clean_curves()["val/loss"][1].copy()
    val[5] = np.inf
    assert checks("smdebug", clean(val__loss=(e, val)))["ExplodingTensor"] == "diverged"
    steps = np.arange(1, 2001, dtype=float)
    grad = np.where(steps >= 1001, np.nan, 1.0)
    assert checks("smdebug", clean(step__grad_norm=(steps, grad)))["ExplodingTensor"] == "diverged"


def test_smdebug_exploding_tensor_sees_a_log_that_ends_non_finite():
    steps = np.arange(1, 32, dtype=float)  # stopped by a NaN guard at step 31, before the next saved step
    loss = np.append(np.linspace(2.3, 3.0, 30), np.nan)
    rec = make({"step/loss": (steps, loss)}, meta={"steps_per_epoch": 90})
    assert checks("smdebug", rec) == {"ExplodingTensor": "diverged"}


def test_smdebug_exploding_tensor_misses_a_transient_between_saved_steps():
    steps = np.arange(1, 2001, dtype=float)
    grad = np.ones(steps.size)
    grad[700] = np.inf  # step 701: not a multiple of save_interval (after the 0-based shift), recovered after
    assert "ExplodingTensor" not in checks("smdebug", clean(step__grad_norm=(steps, grad)))


def test_smdebug_unchanged_tensor_fires_on_a_constant_loss():
    rec = train_only([2.0, 1.0, 0.5, 0.5, 0.5])
    assert checks("smdebug", rec)["UnchangedTensor"] == "lr_too_low"


# --- AUTOTRAINER -----------------------------------------------------------------------------------


def test_autotrainer_nan_loss_is_explode():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    train = clean_curves()["train/loss"][1].copy()
    train[4:] = np.nan
    fired = autotrainer.explain(clean(train__loss=(e, train)))
    assert [(c, k) for c, k, _ in fired] == [("explode_nan", "diverged")]
    assert "epoch 7" in fired[0][2]  # found at the check after epoch 7 (checks every 3 epochs)


def test_autotrainer_huge_val_loss_is_explode():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    val = clean_curves()["val/loss"][1].copy()
    val[6] = 2e5
    assert checks("autotrainer", clean(val__loss=(e, val))) == {"explode_nan": "diverged"}


def _poor_accuracy() -> dict:
    e = np.arange(1, EPOCHS + 1, dtype=float)
    acc = 0.2 + 0.02 * e  # rising (gains 0.02 >= delta) but below Theta 0.7: not converged
    return {"train__acc": (e, acc), "val__acc": (e, acc)}


def test_autotrainer_exploding_gradient_needs_the_ratio_and_an_unconverged_run():
    tel = clean_curves()["telemetry/stem/grad_norm"][0]
    big = {"telemetry__stem__grad_norm": (tel, np.full(tel.size, 100.0))}  # stem / head = 100 > beta_3 70
    assert checks("autotrainer", clean(**big, **_poor_accuracy())) == {"explode_gradient": "gradients"}
    assert checks("autotrainer", clean(**big)) == {}  # converged accuracy: the code reports nothing


def test_autotrainer_vanishing_gradient():
    tel = clean_curves()["telemetry/stem/grad_norm"][0]
    small = {"telemetry__stem__grad_norm": (tel, np.full(tel.size, 1e-6))}  # ratio 1e-6 < 1e-3, stem 1e-6 < 1e-4
    assert checks("autotrainer", clean(**small, **_poor_accuracy())) == {"vanish": "gradients"}


def test_autotrainer_layer_order_puts_stem_first_and_head_last():
    tel = clean_curves()["telemetry/stem/grad_norm"][0]
    # 'head' sorts before 'stem' alphabetically; a wrong order would read head/stem = 1e4 as exploding
    rec = clean(telemetry__stem__grad_norm=(tel, np.full(tel.size, 1e-6)), **_poor_accuracy())
    assert "explode_gradient" not in checks("autotrainer", rec)


def test_autotrainer_oscillating_accuracy_is_unstable():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    acc = np.where(e % 2 == 0, 0.85, 0.75)  # converged (>= Theta), swings of 0.1 >= zeta 0.03
    fired = checks("autotrainer", clean(train__acc=(e, acc), val__acc=(e, acc - 0.01)))
    assert fired == {"unstable": "lr_too_high"}


def test_autotrainer_flat_accuracy_is_slow_convergence():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    flat = np.full(EPOCHS, 0.3)
    assert checks("autotrainer", clean(train__acc=(e, flat), val__acc=(e, flat))) == {"not_converge": "lr_too_low"}


def test_autotrainer_judges_a_three_epoch_run_at_its_first_epoch():
    # judgment point 0.3 x 3 epochs: the check after epoch 1 already runs loss_issue, where one epoch
    # has no accuracy gain (max_delta_acc = 0 < delta): AUTOTRAINER v1.0 reports not_converge.
    acc = epochs_with([0.5, 0.6, 0.8])
    loss = epochs_with([1.0, 0.8, 0.6])
    rec = make({"train/loss": loss, "val/loss": loss, "train/acc": acc, "val/acc": acc}, meta={"max_epochs": 3})
    assert checks("autotrainer", rec) == {"not_converge": "lr_too_low"}


def test_autotrainer_stops_at_the_first_check_that_finds_a_problem():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    flat = np.full(EPOCHS, 0.3)
    train = clean_curves()["train/loss"][1].copy()
    train[15:] = np.nan  # would be explode, but not_converge was already reported at an earlier check
    rec = clean(train__acc=(e, flat), val__acc=(e, flat), train__loss=(e, train))
    assert checks("autotrainer", rec) == {"not_converge": "lr_too_low"}


# --- UMLAUT ------------------------------------------------------------------------------------------


def test_umlaut_overfitting_fires_when_val_loss_rises_and_train_loss_does_not():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    val = clean_curves()["val/loss"][1].copy()
    val[10] = val[9] + 0.01
    assert checks("umlaut", clean(val__loss=(e, val))) == {"check_overfitting": "overfitting"}


@pytest.mark.parametrize(
    ("lr", "check", "category"),
    [(0.1, "check_learning_rate_range/high", "lr_too_high"), (1e-8, "check_learning_rate_range/low", "lr_too_low")],
)
def test_umlaut_learning_rate_range(lr, check, category):
    e = np.arange(1, EPOCHS + 1, dtype=float)
    assert checks("umlaut", clean(epoch__lr__default=(e, np.full(EPOCHS, lr)))) == {check: category}


def test_umlaut_learning_rate_from_steps_and_from_config():
    steps = np.arange(1, EPOCHS * SPE + 1, dtype=float)
    rec = clean(epoch__lr__default=None, step__lr__default=(steps, np.where(steps > 1500, 0.05, 1e-3)))
    assert "check_learning_rate_range/high" in checks("umlaut", rec)
    curves = {k: v for k, v in clean_curves().items() if "/lr/" not in k}
    rec = make(curves, meta=CLEAN_META, config={"optimizer": {"lr": 0.5}})
    assert checks("umlaut", rec) == {"check_learning_rate_range/high": "lr_too_high"}


def test_umlaut_high_validation_accuracy_from_the_fourth_epoch():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    train_acc = clean_curves()["train/acc"][1]
    early = train_acc - 0.02
    early[2] = 0.99  # Keras epoch 2: ignored
    assert "check_high_validation_acc" not in checks("umlaut", clean(val__acc=(e, early)))
    late = train_acc - 0.02
    late[3] = 0.97  # Keras epoch 3: val acc > 0.95
    assert checks("umlaut", clean(val__acc=(e, late))) == {"check_high_validation_acc": "eval_mismatch"}
    above = train_acc + 0.06  # val acc more than 5 points above train acc
    assert checks("umlaut", clean(val__acc=(e, np.minimum(above, 0.94)))) == {"check_high_validation_acc": "eval_mismatch"}


def test_umlaut_reads_percent_accuracy():
    e = np.arange(1, EPOCHS + 1, dtype=float)
    acc = clean_curves()["train/acc"][1]
    val = acc - 0.02
    val[5] = 0.97
    assert checks("umlaut", clean(train__acc=(e, acc * 100), val__acc=(e, val * 100))) == {"check_high_validation_acc": "eval_mismatch"}


# --- robustness -----------------------------------------------------------------------------------------

KEYS = ["train/loss", "val/loss", "train/acc", "val/acc", "step/loss", "step/grad_norm", "step/lr/default", "epoch/lr/default",
        "telemetry/stem/grad_norm", "telemetry/head/grad_norm", "telemetry/stem/update_ratio", "telemetry/head/drift"]


def _assert_well_formed(record: RunRecord) -> None:
    for name in ANCHORS:
        found = EXPLAINERS[name](record)
        assert isinstance(found, list)
        for check, category, evidence in found:
            assert check in CATEGORY_MAPS[name] and CATEGORY_MAPS[name][check] == category
            assert category in CATEGORIES
            assert isinstance(evidence, str) and evidence and "\n" not in evidence
        assert ANCHORS[name](record) == {c for _, c, _ in found} <= set(CATEGORIES)


@pytest.mark.parametrize(
    "curves",
    [
        {},
        {"train/loss": ([1.0], [2.0])},
        {"val/loss": ([1.0], [np.nan])},
        {"train/acc": ([1.0, 2.0], [50.0, 60.0])},
        {k: ([1.0, 2.0, 3.0], [np.nan] * 3) for k in KEYS},
        {k: ([1.0, 2.0, 3.0], [np.inf, -np.inf, np.nan]) for k in KEYS},
        {k: ([1.0, 2.0, 3.0, 4.0], [0.0] * 4) for k in KEYS},
        {k: ([1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]) for k in KEYS},
        {"train/loss": ([np.nan, 1.0, 2.0], [1.0, 0.5, 0.2]), "val/loss": ([2.0, np.nan], [0.5, 0.4])},
        {"train/loss": ([1.0, 2.0], [1.0, 0.5]), "val/acc": ([5.0, 10.0], [0.4, 0.5])},
        {"step/loss": (np.arange(1, 50), np.linspace(2, 1, 49))},
        {"telemetry/stem/grad_norm": ([10.0], [1.0])},
    ],
)
@pytest.mark.parametrize("x_unit", ["epoch", "step"])
@pytest.mark.parametrize("meta", [{}, {"steps_per_epoch": 10, "max_epochs": 3}, {"steps_per_epoch": "x", "max_epochs": True}])
def test_degenerate_records_never_raise(curves, x_unit, meta):
    _assert_well_formed(make(curves, x_unit=x_unit, meta=meta))


_values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def records(draw):
    chosen = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    curves = {}
    for key in chosen:
        n = draw(st.integers(0, 12))
        xs = sorted(draw(st.lists(st.floats(0, 60, allow_nan=False), min_size=n, max_size=n)))
        vals = draw(st.lists(_values, min_size=n, max_size=n))
        curves[key] = (xs, vals)
    meta = draw(st.sampled_from([{}, {"steps_per_epoch": 3}, {"max_epochs": 40}, {"steps_per_epoch": 5, "max_epochs": 2}]))
    config = draw(st.sampled_from([{}, {"optimizer": {"lr": 0.5}}, {"learning_rate": "n/a"}]))
    return make(curves, x_unit=draw(st.sampled_from(["epoch", "step"])), meta=meta, config=config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_random_records_never_raise(record):
    _assert_well_formed(record)


def test_sample_runs_load_and_stay_in_vocabulary():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "sample_runs"
    runs = sorted(root.glob("*/run.json"))
    if not runs:
        pytest.skip("no sample runs in this checkout")
    for path in runs:
        _assert_well_formed(RunRecord.load(path))
