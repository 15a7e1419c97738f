"""The treat loop with real training on digits, a real SQLite MLflow store and the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from paramdoctor import engine
from paramdoctor.config import load_config
from paramdoctor.experiments.treat import CANNOT_TRAIN, ROUND_TAG, compare_bests, treat
from paramdoctor.report.tool import attach_tool_prescription
from paramdoctor.sources.mlflow_source import open_client, record_from_mlflow
from paramdoctor.sources.resolve import resolve_run
from paramdoctor.training import fit

REAL = Path(__file__).resolve().parents[2] / "sample_runs" / "real"
HF_STATE = REAL / "hf-trainer-state-arshiv-web-financial-news-sentiment-analysis" / "trainer_state.json"

# SGD at a learning rate 1000x too high with strong L2, on 256 images: the loss turns NaN within 4 epochs.
BROKEN = [
    "data.subset=256", "trainer.max_epochs=4", "data.batch_size=16", "optimizer.name=sgd", "optimizer.lr=10",
    "optimizer.backbone_lr=10", "optimizer.momentum=0.9", "optimizer.weight_decay=1.0", "trainer.log_every_n_steps=4",
]
RULES = engine.load_rules()


def judge(record):
    return attach_tool_prescription(engine.diagnose(record, RULES, {}), record)


def train_broken():
    result = fit(load_config(None, BROKEN))
    return record_from_mlflow(result.run_id)


class Trainer:
    """fit, counting the runs it made."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def __call__(self, config, *, parent_run_id, extra_tags):
        result = fit(config, parent_run_id=parent_run_id, extra_tags=extra_tags)
        self.runs.append(result.run_id)
        return result


def test_one_round_trains_a_child_that_clears_the_divergence(migrated_store_uri):
    parent = train_broken()
    before = judge(parent)
    assert "PD101" in [f.code for f in before.findings]
    trainer, rounds = Trainer(), []

    result = treat(parent, judge=judge, train=trainer, read=record_from_mlflow, rounds=1, on_round=rounds.append)

    assert len(trainer.runs) == 1 and len(result.rounds) == 1 and rounds == result.rounds
    r = result.rounds[0]
    assert r.runs == trainer.runs and r.findings_before == [f.code for f in before.findings]
    assert "PD101" in r.cleared and set(r.cleared) <= set(r.findings_before)
    assert set(r.cleared).isdisjoint(r.findings_after)
    assert r.changes["optimizer.lr"] < 10
    assert r.verdict == "better" and r.best_after > r.best_before and r.delta == pytest.approx(r.best_after - r.best_before)
    assert r.best_epoch_after is not None and r.time_to_best_after > 0
    child = open_client().get_run(r.runs[0])
    assert child.data.tags["mlflow.parentRunId"] == parent.run_id
    assert child.data.tags[ROUND_TAG] == "1"
    assert result.best_run_id == r.runs[0]
    assert result.status in ("healthy", "improved")
    assert result.exit_code == (0 if result.status == "healthy" else 1)
    data = result.to_dict()
    assert data["schema_version"] == 1 and data["run_id"] == parent.run_id and data["rounds"][0]["runs"] == r.runs


def test_seeds_train_baseline_and_prescription_on_the_same_seeds(migrated_store_uri):
    parent = train_broken()
    trainer = Trainer()

    result = treat(parent, judge=judge, train=trainer, read=record_from_mlflow, rounds=1, seeds=2)

    r = result.rounds[0]
    assert len(r.baseline_runs) == 2 and len(r.runs) == 2 and trainer.runs == r.baseline_runs + r.runs
    client = open_client()
    seeds = [client.get_run(i).data.params["seed"] for i in r.baseline_runs + r.runs]
    assert seeds == ["42", "43", "42", "43"]  # the parent's seed (the default), then seed+1
    for run_id in r.baseline_runs + r.runs:
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert r.ci is not None and r.ci[0] <= r.delta <= r.ci[1]
    assert r.verdict in ("better", "inconclusive")  # two seeds: the interval may be wide


def test_an_imported_log_is_not_trained(migrated_store_uri):
    record = resolve_run(str(HF_STATE))

    def no_training(config, **_):
        raise AssertionError("treat trained a run from another tool")

    result = treat(record, judge=judge, train=no_training, read=record_from_mlflow)

    assert result.status == CANNOT_TRAIN and result.rounds == []
    assert result.diagnosis.prescription.tool is not None and result.diagnosis.prescription.tool.name == "hf_trainer"
    assert result.exit_code == (0 if result.diagnosis.status == "healthy" else 1)


def test_paired_verdict_needs_the_interval_to_exclude_zero():
    delta, ci, p, verdict = compare_bests([0.80, 0.82, 0.81], [0.90, 0.91, 0.92], "max")
    assert delta == pytest.approx(0.1) and ci[0] > 0 and p < 0.05 and verdict == "better"
    _, ci, _, verdict = compare_bests([0.80, 0.90, 0.81], [0.85, 0.84, 0.86], "max")
    assert ci[0] < 0 < ci[1] and verdict == "inconclusive"
    _, _, _, verdict = compare_bests([0.30, 0.31, 0.32], [0.40, 0.42, 0.41], "min")  # a loss going up
    assert verdict == "worse"
    assert compare_bests([0.5], [0.6], "max") == (pytest.approx(0.1), None, None, "better")
    assert compare_bests([None], [0.6], "max")[3] == "better"


def test_a_round_that_makes_the_metric_worse_stops_and_keeps_the_best_run(migrated_store_uri):
    # a sane but short run (still improving when it ended: a finding to treat)
    sane = [o for o in BROKEN if "lr=" not in o and "weight_decay" not in o] + [
        "optimizer.lr=0.01", "optimizer.backbone_lr=0.01", "optimizer.weight_decay=0",
    ]
    parent = record_from_mlflow(fit(load_config(None, sane)).run_id)
    assert judge(parent).findings
    trainer = Trainer()

    def worse(config, *, parent_run_id, extra_tags):  # a bad hand-off: the broken recipe instead of the prescription
        return trainer(load_config(None, BROKEN), parent_run_id=parent_run_id, extra_tags=extra_tags)

    result = treat(parent, judge=judge, train=worse, read=record_from_mlflow, rounds=3)

    assert len(result.rounds) == 1 and len(trainer.runs) == 1
    assert result.rounds[0].verdict == "worse" and "worse" in result.stop_reason
    assert result.best_run_id == parent.run_id and result.status == "not_improved" and result.exit_code == 1
