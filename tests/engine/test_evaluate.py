import json
import math

import numpy as np
import pytest

from paramdoctor.diagnosis import SEVERITIES
from paramdoctor.engine import diagnose, evaluate_rule, find_rule, load_rules, summarize
from paramdoctor.engine.stages import stage_of
from paramdoctor.record import RunRecord, Series

from tests.rules import synthetic


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def _skipped(diagnosis, code):
    return next(s for s in diagnosis.skipped if s.code == code)


def test_missing_series_and_short_curves_are_skipped_with_a_reason(rules):
    x = np.arange(1, 4, dtype=float)
    record = RunRecord(series={"train/loss": Series(x, [2.0, 1.5, 1.2]), "val/loss": Series(x, [2.1, 1.7, 1.4])})
    d = diagnose(record, rules)
    assert d.findings == []
    assert "no chance level" in _skipped(d, "PD501").reason
    assert "needs train/acc" in _skipped(d, "PD202").reason
    assert "needs step/grad_norm" in _skipped(d, "PD401").reason
    assert _skipped(d, "PD301").reason == "needs at least 6 points of train/loss, has 3"
    assert "telemetry/*/drift" in _skipped(d, "PD303").reason
    assert [s.code for s in d.skipped] == sorted(s.code for s in d.skipped)


def test_an_empty_record_is_judged_without_crashing(rules):
    d = diagnose(RunRecord(series={}), rules)
    assert d.status == "no_validation" and d.exit_code == 3 and len(d.skipped) == len(rules)
    assert "no curves at all" in d.missing
    assert d.summary["best_x"] is None and d.summary["epochs_run"] is None


def test_nan_and_inf_everywhere_never_crash(rules):
    rng = np.random.default_rng(0)
    x = np.arange(1, 31, dtype=float)
    steps = np.arange(1, 301, dtype=float)

    def garbage(n):
        v = rng.standard_normal(n) * 10
        v[rng.random(n) < 0.3] = np.nan
        v[rng.random(n) < 0.1] = np.inf
        v[rng.random(n) < 0.1] = -np.inf
        return v

    series = {k: Series(x, garbage(30)) for k in ("train/loss", "val/loss", "train/acc", "val/acc")}
    series.update({k: Series(steps, garbage(300)) for k in ("step/loss", "step/grad_norm")})
    series.update({f"telemetry/{g}/{f}": Series(steps[::10], garbage(30)) for g in ("head", "backbone.l4") for f in ("drift", "update_ratio")})
    record = RunRecord(series=series, meta={"num_classes": 10}, config={"model": {"weights": "DEFAULT"}}, status="FAILED")
    d = diagnose(record, rules)
    assert "PD101" in [f.code for f in d.findings]
    json.dumps(d.to_dict(), allow_nan=False)  # strict JSON: NaN/inf became strings


def test_a_running_run_is_not_called_undertrained(rules):
    record = synthetic.sick("PD203")
    record.status = "RUNNING"
    record.meta.pop("stop_reason")
    d = diagnose(record, rules)
    assert "PD203" not in [f.code for f in d.findings]
    assert _skipped(d, "PD203").reason == "the run is still running; this rule judges finished runs"


def test_how_a_run_ended_is_evidence_not_a_gate(rules):
    # early stopping (on val/acc, patience 5) ended a run whose curves were still improving: undertrained all the same
    record = synthetic.sick("PD203")
    record.meta["stop_reason"] = "early_stopping"
    d = diagnose(record, rules)
    finding = next(f for f in d.findings if f.code == "PD203")
    assert "early stopping ended the run" in finding.evidence.message
    assert d.prescription.patch["early_stopping.patience"] == 10  # twice the patience that cut it short
    # a log from another tool has no status and no stop reason: its curves are judged
    record.status, record.source = "UNKNOWN", "hf_trainer"
    record.meta.pop("stop_reason")
    record.config = {}
    assert "PD203" in [f.code for f in diagnose(record, rules).findings]
    # a run still running is not "still improving at the end": it has no end yet
    record.status = "RUNNING"
    assert "still running" in _skipped(diagnose(record, rules), "PD203").reason


def test_forgetting_is_judged_only_on_pretrained_runs(rules):
    record = synthetic.sick("PD303")
    record.config["model"]["weights"] = None
    d = diagnose(record, rules)
    assert "did not start from pretrained weights" in _skipped(d, "PD303").reason
    record.config = {}
    assert "cannot tell" in _skipped(diagnose(record, rules), "PD303").reason


def test_evidence_speaks_in_steps_for_step_indexed_evaluations(rules):
    healthy_u = synthetic.sick("PD301")
    series = dict(healthy_u.series)
    for key in ("train/loss", "val/loss", "train/acc", "val/acc"):
        s = series[key]
        series[key] = Series(s.steps * 50, s.values)
    record = RunRecord(series=series, meta=healthy_u.meta, config=healthy_u.config, status="FINISHED", x_unit="step")
    d = diagnose(record, rules)
    finding = next(f for f in d.findings if f.code == "PD301")
    assert "in step 350 of 1000" in finding.evidence.message
    assert finding.evidence.x_unit == "step" and finding.evidence.onset == 400.0
    assert d.x_unit == "step" and d.summary["best_epoch"] is not None


def test_findings_are_ordered_by_severity_then_stage(rules):
    d = diagnose(synthetic.sick("PD201"), rules)  # lr_too_low and gradients together
    keys = [(SEVERITIES.index(f.severity), stage_of(f.category), f.code) for f in d.findings]
    assert keys == sorted(keys)
    # gradients (stability) before fitting; no PD203: a run still at chance level is not "nearly there"
    assert [f.code for f in d.findings] == ["PD404", "PD201"]


def test_a_finding_carries_numbers_doc_and_onset(rules):
    d = diagnose(synthetic.sick("PD301"), rules)
    f = d.findings[0]
    assert f.code == "PD301" and f.category == "overfitting" and f.severity == "error"
    assert f.evidence.message.startswith("val/loss bottomed at 0.")
    assert f.evidence.values["held"] >= 3 and isinstance(f.evidence.values["rise"], float)
    assert f.evidence.onset is not None and f.why and f.fix and "\n" not in f.why


def test_persistence_window_keeps_a_short_rise_silent(rules):
    rule = find_rule(rules, "PD301")
    record = synthetic.sick("PD301")
    held = diagnose(record, [rule]).findings[0].evidence.values["held"]
    assert evaluate_rule(rule, record, {**rule.params, "persistence": held}).finding is not None
    assert evaluate_rule(rule, record, {**rule.params, "persistence": held + 1}).finding is None


def test_summary(rules):
    record = synthetic.healthy(0)
    s = summarize(record)
    acc = record.series["val/acc"]
    assert s["monitor"] == "val/acc" and s["mode"] == "max"
    assert s["best_value"] == pytest.approx(float(np.max(acc.values)))
    assert s["best_epoch"] == s["best_x"] == int(acc.steps[np.argmax(acc.values)])
    assert s["epochs_run"] == int(acc.steps[-1]) and s["run_status"] == "FINISHED"
    assert s["stop_reason"] == "early_stopping" and math.isfinite(s["final_train_loss"])
    json.dumps(diagnose(record, rules).to_dict(), allow_nan=False)


def test_weight_decay_pull_reads_paramdoctor_and_hugging_face_configs(rules):
    rule = find_rule(rules, "PD405")
    sgd = RunRecord(series={}, config={"optimizer": {"name": "sgd", "lr": 10.0, "backbone_lr": 10.0, "weight_decay": 1.0, "momentum": 0.9}})
    finding = evaluate_rule(rule, sgd).finding
    assert finding is not None and finding.evidence.values["unstable"] is True
    assert "past 3.8" in finding.evidence.message
    hf = RunRecord(series={}, config={"optim": "adamw_torch", "learning_rate": 0.5, "weight_decay": 0.1})
    assert evaluate_rule(rule, hf).finding.evidence.values["shrink_per_step"] == pytest.approx(0.05)
    # the logged peak learning rate wins over the configured one
    logged = RunRecord(series={"step/lr/head": Series(np.arange(1.0, 4.0), np.array([0.001, 0.002, 0.001]))}, config=hf.config)
    assert evaluate_rule(rule, logged).finding is None
    unknown = evaluate_rule(rule, RunRecord(series={}, config={"learning_rate": 0.5}))
    assert "does not say which optimizer" in unknown.skipped.reason
    adam = evaluate_rule(rule, RunRecord(series={}, config={"optimizer": {"name": "adam", "lr": 1.0, "weight_decay": 0.5}}))
    assert "only SGD and AdamW" in adam.skipped.reason


def test_an_early_stopped_run_is_not_blamed_for_waiting_out_its_patience(rules):
    import dataclasses

    rule = find_rule(rules, "PD204")
    run = synthetic.sick("PD204")
    after = evaluate_rule(rule, run).finding.evidence.values["after"]
    stopped = {**run.config, "early_stopping": {**run.config["early_stopping"], "enabled": True, "patience": after}}
    assert evaluate_rule(rule, dataclasses.replace(run, config=stopped)).finding is None
    # a patience that explains only part of the wait still leaves the rest wasted
    short = {**stopped, "early_stopping": {**stopped["early_stopping"], "patience": after - 10}}
    assert evaluate_rule(rule, dataclasses.replace(run, config=short)).finding is not None


def test_tiny_updates_of_a_network_that_fitted_its_data_are_convergence(rules):
    import dataclasses

    rule = find_rule(rules, "PD404")
    stuck = synthetic.sick("PD404")
    assert evaluate_rule(rule, stuck).finding is not None
    # the same tiny updates after the training loss fell by 95%: converged, not a tiny LR
    x = stuck.series["train/loss"].steps
    fitted = dict(stuck.series, **{"train/loss": Series(x, 2.3 * np.exp(-0.25 * x)), "step/loss": Series(np.array([1.0, 2.0, 3.0]), np.array([2.3, 2.3, 2.3]))})
    assert evaluate_rule(rule, dataclasses.replace(stuck, series=fitted)).finding is None


def test_the_blow_up_cut_follows_the_first_updates(rules):
    import dataclasses

    from paramdoctor.engine import prescribe

    rule = find_rule(rules, "PD102")
    run = synthetic.sick("PD102")
    steps = run.series["telemetry/head/update_ratio"].steps
    huge_first_steps = Series(steps, np.where(steps <= steps[len(steps) // 10], 0.25, 1e-3))
    hot = dataclasses.replace(run, series={**run.series, "telemetry/head/update_ratio": huge_first_steps})
    finding = evaluate_rule(rule, hot).finding
    assert finding.evidence.values["lr_factor"] == pytest.approx(0.04)  # 1e-2 / 0.25
    rx = prescribe([(rule, finding)], hot)
    assert rx.next_config["optimizer"]["lr"] == pytest.approx(run.config["optimizer"]["lr"] * 0.04)
    # without telemetry, the classic 10x
    bare = dataclasses.replace(run, series={k: s for k, s in run.series.items() if not k.startswith("telemetry/")})
    assert evaluate_rule(rule, bare).finding.evidence.values["lr_factor"] == 0.1


def test_a_larger_batch_never_exceeds_the_training_split(rules):
    import dataclasses

    from paramdoctor.engine import prescribe

    rule = find_rule(rules, "PD105")
    run = synthetic.sick("PD105")  # batches of 2
    finding = evaluate_rule(rule, run).finding
    assert prescribe([(rule, finding)], run).next_config["data"]["batch_size"] == 16
    small = dataclasses.replace(run, meta={**run.meta, "train_samples": 10})
    finding = evaluate_rule(rule, small).finding
    assert finding.evidence.values["train_samples"] == 10
    capped = prescribe([(rule, finding)], small).next_config
    assert capped["data"]["batch_size"] == 10
    # the steps are too large for the batch (lr_too_high): the learning rate is never raised with it
    assert capped["optimizer"]["lr"] == run.config["optimizer"]["lr"]
    # a batch already past the cap is not shrunk by a rule that wants it larger
    big = dataclasses.replace(small, config={**run.config, "data": {**run.config["data"], "batch_size": 64}})
    finding = evaluate_rule(rule, big).finding
    assert finding.evidence.values["batch_growth"] == 1.0
    assert "data.batch_size" not in {c.key for c in prescribe([(rule, finding)], big).changes}
