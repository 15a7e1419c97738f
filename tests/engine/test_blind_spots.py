"""The doctor's former blind spots, one class of run each: every test here failed before they were closed.

Each builds the pattern from realistic curves (``tests.rules.synthetic``) and
checks what the doctor says, and what it must not say.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from paramdoctor.engine import diagnose, load_rules
from paramdoctor.record import RunRecord, Series
from tests.rules import synthetic

RULES = load_rules()


def codes(record: RunRecord) -> list[str]:
    return [f.code for f in diagnose(record, RULES).findings]


def _foreign(record: RunRecord, source: str = "hf_trainer") -> RunRecord:
    """The same curves as another tool's log gives them: no status, no stop reason, no paramdoctor config."""
    meta = {k: v for k, v in record.meta.items() if k not in ("stop_reason", "monitor", "mode")}
    return dataclasses.replace(record, status="UNKNOWN", source=source, config={}, meta=meta, run_id=None)


# --- 1. how a run ended is evidence, not a gate ----------------------------------------


def test_a_foreign_log_still_improving_at_its_end_is_undertrained():
    record = _foreign(synthetic.sick("PD203"))
    d = diagnose(record, RULES)
    finding = next(f for f in d.findings if f.code == "PD203")
    assert "the log ends there" in finding.evidence.message


def test_early_stopping_on_accuracy_while_val_loss_falls_every_epoch_is_undertrained():
    run = synthetic.Run(3, epochs=14)
    t = run.x
    run.val_acc = np.minimum(0.9, 0.6 + 0.1 * t) + 0.002 * run.rng.standard_normal(t.size)  # flat from epoch 3
    run.val_loss = 1.2 * np.exp(-0.08 * t)  # falls at every epoch, 40% over the run
    run.train_loss = 1.1 * np.exp(-0.1 * t)
    run.meta["stop_reason"] = "early_stopping"
    d = diagnose(run.record(), RULES)
    finding = next(f for f in d.findings if f.code == "PD203")
    assert finding.evidence.values["series"] == "val/loss"
    assert "early stopping ended the run" in finding.evidence.message
    assert d.prescription.patch["early_stopping.patience"] == 10


# --- 2. never HEALTHY on what could not be read ---------------------------------------------


def test_a_run_without_a_validation_curve_is_never_healthy():
    healthy = synthetic.healthy()
    train_only = dataclasses.replace(healthy, series={k: s for k, s in healthy.series.items() if not k.startswith("val/")})
    d = diagnose(train_only, RULES)
    assert d.findings == [] and d.status == "no_validation" and d.exit_code == 3
    assert "no validation curve" in d.missing and "train/loss" in d.missing


def test_an_export_whose_series_are_empty_is_never_healthy():
    empty = RunRecord(series={"val/loss": Series([], []), "train/loss": Series([], [])})
    d = diagnose(empty, RULES)
    assert d.status == "no_validation" and d.exit_code == 3 and "no curves at all" in d.missing
    all_nan = RunRecord(series={"val/loss": Series([1, 2, 3], [np.nan] * 3), "train/loss": Series([1, 2, 3], [1.0, 0.8, 0.7])})
    d = diagnose(all_nan, RULES)
    assert d.status != "healthy" and d.exit_code != 0


def test_each_evaluation_set_is_judged_and_named():
    # two evaluation sets (HF eval_<set>_loss): "matched" generalises, "mismatched" overfits
    good = synthetic.healthy(1)
    bad = synthetic.sick("PD301", 1)
    n = min(len(good.series["val/loss"]), len(bad.series["val/loss"]))
    x = good.series["val/loss"].steps[:n]
    series = {k: s for k, s in good.series.items() if not k.startswith("val/")}
    series["val/matched/loss"] = Series(x, good.series["val/loss"].values[:n])
    series["val/matched/acc"] = Series(x, good.series["val/acc"].values[:n])
    series["val/mismatched/loss"] = Series(x, bad.series["val/loss"].values[:n])
    series["val/mismatched/acc"] = Series(x, bad.series["val/acc"].values[:n])
    record = dataclasses.replace(good, series=series, meta={**good.meta, "eval_sets": ["matched", "mismatched"]})
    record.series["train/loss"] = Series(x, bad.series["train/loss"].values[:n])
    d = diagnose(record, RULES)
    assert d.eval_sets == ["matched", "mismatched"] and d.missing is None
    overfit = [f for f in d.findings if f.code == "PD301"]
    assert [f.eval_set for f in overfit] == ["mismatched"]
    assert d.to_dict()["findings"][0]["eval_set"] is not None or len(d.findings) > 1


# --- 4. a chance level without a class count, and none where a loss has none ----------------


def test_stuck_at_binary_chance_without_a_class_count_is_underfitting_not_lr_too_low():
    record = _foreign(synthetic.sick("PD205"))
    d = diagnose(record, RULES)
    found = {f.code: f for f in d.findings}
    assert "PD205" in found and found["PD205"].category == "underfitting"
    assert "PD201" not in found  # nothing says the learning rate is small
    assert "ln(2)" in found["PD205"].evidence.message


def test_stuck_at_chance_with_a_tiny_logged_lr_is_lr_too_low():
    stuck = synthetic.sick("PD205")
    series = dict(stuck.series)
    series["step/lr/head"] = Series(series["step/lr/head"].steps, np.full(series["step/lr/head"].steps.size, 5e-7))
    record = _foreign(dataclasses.replace(stuck, series={k: v for k, v in series.items() if not k.startswith("telemetry/")}))
    found = codes(record)
    assert "PD201" in found and "PD205" not in found


def test_a_detection_loss_never_gets_a_chance_level():
    # Ultralytics sums box, class and DFL losses: a flat sum near 0.69 is no binary classifier
    run = synthetic.Run(0, epochs=20)
    t, r = run.x, run.rng
    run.train_loss = 0.69 + 0.004 * r.standard_normal(t.size)
    run.val_loss = 0.70 + 0.004 * r.standard_normal(t.size)
    record = _foreign(run.record(telemetry=False), source="ultralytics")
    record.meta.pop("num_classes")
    record.series.pop("train/acc")
    record.series.pop("val/acc")
    d = diagnose(record, RULES)
    assert "PD205" not in [f.code for f in d.findings]
    assert all("chance" not in f.evidence.message for f in d.findings)
    assert "no chance level" in next(s for s in d.skipped if s.code == "PD205").reason


# --- 5. a flat curve has no early best epoch ------------------------------------------------


def test_a_best_epoch_inside_the_noise_is_not_overtraining():
    run = synthetic.Run(5, epochs=36)
    run.val_acc = 0.9 + 0.004 * run.rng.standard_normal(36)
    run.val_acc[3] = 0.915  # the "best" epoch: one lucky evaluation on a flat curve
    run.config = synthetic._config(early_stopping={"enabled": False}, trainer={"max_epochs": 36})
    run.meta["stop_reason"] = "max_epochs"
    assert "PD204" not in codes(run.record())
    assert "PD204" in codes(synthetic.sick("PD204"))  # a real early peak still is


# --- 6. the logged learning rate ---------------------------------------------------------------


def test_a_warmup_still_running_at_the_end_is_its_own_finding():
    d = diagnose(_foreign(synthetic.sick("PD207")), RULES)
    assert "PD207" in [f.code for f in d.findings]
    assert "PD201" not in [f.code for f in d.findings]


def test_a_plateau_at_the_lr_floor_is_not_a_poor_fit_to_fix_with_a_higher_peak():
    d = diagnose(synthetic.sick("PD208"), RULES)
    found = [f.code for f in d.findings]
    assert "PD208" in found and "PD202" not in found
    assert d.prescription.patch.get("scheduler.min_lr_ratio", 0) >= 0.01
    assert "optimizer.lr" not in d.prescription.patch  # the peak was never the problem


# --- 7. a loss far above its own minimum, though below its start -----------------------------


def test_a_loss_that_climbs_far_above_its_minimum_below_its_start_is_unstable():
    d = diagnose(synthetic.sick("PD107"), RULES)
    found = {f.code: f for f in d.findings}
    assert "PD107" in found and found["PD107"].category == "unstable"
    assert "PD102" not in found  # not above where it started: instability, not divergence


# --- 8. the run that is simply too slow -----------------------------------------------------------


def test_a_from_scratch_backbone_at_a_fine_tuning_lr_is_too_slow_though_its_curves_look_fine():
    d = diagnose(synthetic.sick("PD206"), RULES)
    finding = next(f for f in d.findings if f.code == "PD206")
    assert finding.category == "lr_too_low"
    change = next(c for c in d.prescription.changes if c.key == "optimizer.backbone_lr")
    assert (change.old, change.new) == (1e-4, None)  # back to auto: the head's LR for a from-scratch backbone


def test_small_backbone_steps_are_the_recipe_when_fine_tuning_pretrained_weights():
    record = synthetic.sick("PD206")
    record.config["model"]["weights"] = "IMAGENET1K_V1"
    d = diagnose(record, RULES)
    assert "PD206" not in [f.code for f in d.findings]
    assert "pretrained" in next(s for s in d.skipped if s.code == "PD206").reason


# --- 9. prescriptions that fit the evidence ----------------------------------------------------


@pytest.mark.parametrize("code", [r.code for r in RULES if r.category == "lr_too_high"])
def test_an_lr_too_high_finding_never_raises_the_learning_rate(code):
    record = synthetic.sick(code)
    d = diagnose(record, RULES)
    before = record.config["optimizer"]
    after = d.prescription.next_config["optimizer"]
    assert after["lr"] <= before["lr"]


def test_an_overtrained_run_is_prescribed_regularisation_not_only_fewer_epochs():
    d = diagnose(synthetic.sick("PD204"), RULES)
    own = {c.key for c in d.prescription.changes if c.rule == "PD204"}
    assert "trainer.max_epochs" in own
    assert own & {"optimizer.weight_decay", "data.augment", "model.dropout"}


def test_a_capped_factor_is_shown_as_applied():
    record = synthetic.sick("PD201")  # update ratios ~1e-6: the measured factor is 1000x
    record.config["optimizer"]["lr"] = 1e-4  # 1000x would be 0.1; the clamp stops at 0.03
    lr = next(c for c in diagnose(record, RULES).prescription.changes if c.key == "optimizer.lr")
    assert lr.new == 0.03 and lr.factor == pytest.approx(300)
    assert lr.note == "x300 applied (x1000 capped at 0.03)"


def test_learning_rate_cuts_from_several_findings_never_stack():
    d = diagnose(synthetic.sick("PD101"), RULES)
    lr_changes = [c for c in d.prescription.changes if c.key in ("optimizer.lr", "optimizer.backbone_lr")]
    assert len({c.rule for c in lr_changes}) <= 1
