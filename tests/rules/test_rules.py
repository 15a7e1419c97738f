"""Every built-in rule fires on a run that has its symptom and stays silent on healthy runs."""

import re

import numpy as np
import pytest

from paramdoctor.config import validate
from paramdoctor.engine import diagnose, find_rule, load_rules
from paramdoctor.record import Series

from tests.rules import synthetic

RULES = load_rules()
CODES = [r.code for r in RULES]


def codes(record, rules=RULES):
    return [f.code for f in diagnose(record, rules).findings]


def test_every_builtin_rule_has_a_sick_fixture():
    assert sorted(synthetic.SICK) == CODES


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_rule_fires_on_its_symptom_and_prescribes_a_valid_config(code, seed):
    diagnosis = diagnose(synthetic.sick(code, seed), RULES)
    fired = [f.code for f in diagnosis.findings]
    assert code in fired
    finding = diagnosis.findings[fired.index(code)]
    assert "{" not in finding.evidence.message and not re.search(r"(?<![a-z])n/a(?![a-z])", finding.evidence.message)
    validate(diagnosis.prescription.next_config)  # paramdoctor train accepts it as is
    rule = find_rule(RULES, code)
    own = {c.key for c in diagnosis.prescription.changes if c.rule == code}
    dropped = " ".join(diagnosis.prescription.conflicts)
    assert own or code in dropped or rule.category == "eval_mismatch" or len(fired) > 1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", [synthetic.healthy, synthetic.healthy_at_max_epochs, synthetic.healthy_in_steps])
def test_healthy_runs_fire_nothing(variant, seed):
    diagnosis = diagnose(variant(seed), RULES)
    assert [f"{f.code}: {f.evidence.message}" for f in diagnosis.findings] == []
    assert diagnosis.status == "healthy" and diagnosis.prescription.changes == []


def test_a_healthy_run_still_in_progress_fires_nothing():
    record = synthetic.healthy(0)
    record.status = "RUNNING"
    record.meta.pop("stop_reason")
    for key in ("train/loss", "val/loss", "train/acc", "val/acc"):
        s = record.series[key]
        record.series[key] = Series(s.steps[:8], s.values[:8])
    assert codes(record) == []


# --- near misses: the symptom is there, but too weak or too short to count ---------------


def test_one_bad_validation_point_is_not_overfitting():
    record = synthetic.healthy(1)
    s = record.series["val/loss"]
    values = s.values.copy()
    values[-1] *= 1.6
    record.series["val/loss"] = Series(s.steps, values)
    assert "PD301" not in codes(record)


def test_one_step_spike_is_not_an_unstable_start():
    record = synthetic.healthy(2)
    s = record.series["step/loss"]
    values = s.values.copy()
    values[20] *= 5
    record.series["step/loss"] = Series(s.steps, values)
    assert "PD103" not in codes(record)


def test_a_fast_drop_of_the_gradient_norm_on_a_fitted_model_is_not_vanishing():
    record = synthetic.healthy(3)
    s = record.series["step/grad_norm"]
    record.series["step/grad_norm"] = Series(s.steps, s.values * np.logspace(0, -4, s.values.size))
    assert "PD402" not in codes(record)  # the loss is low: small gradients are expected


def test_modest_backbone_drift_is_fine():
    record = synthetic.sick("PD303")
    for key in [k for k in record.series if k.endswith("/drift") and "backbone" in k]:
        s = record.series[key]
        record.series[key] = Series(s.steps, s.values * 0.2)
    assert "PD303" not in codes(record)


def test_a_swinging_but_tiny_wiggle_is_not_oscillation():
    record = synthetic.sick("PD104")
    s = record.series["train/loss"]
    trend = 0.8 + 0.9 * np.exp(-0.25 * s.steps)
    record.series["train/loss"] = Series(s.steps, trend + 0.002 * np.where(s.steps % 2 == 0, 1.0, -1.0))
    assert "PD104" not in codes(record)


def test_overfitting_from_a_good_minimum_is_not_an_eval_mismatch():
    record = synthetic.sick("PD501")
    s = record.series["val/loss"]
    record.series["val/loss"] = Series(s.steps, 0.5 + 0.02 * (s.steps - 4) ** 2)  # fell to 0.5 first, then rose to chance
    assert "PD501" not in codes(record)


def test_early_best_with_early_stopping_doing_its_job_is_not_overtrained():
    record = synthetic.sick("PD204")
    for key in ("train/loss", "val/loss", "train/acc", "val/acc"):
        s = record.series[key]
        record.series[key] = Series(s.steps[:11], s.values[:11])  # stopped 5 epochs after the best
    assert "PD204" not in codes(record)
