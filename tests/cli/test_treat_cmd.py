"""`paramdoctor treat`, end to end through app.main: a broken run trained on digits, a real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

from paramdoctor.cli import app as app_module
from paramdoctor.config import load_config
from paramdoctor.sources.mlflow_source import open_client
from paramdoctor.training import fit

REAL = Path(__file__).resolve().parents[2] / "sample_runs" / "real"
HF_STATE = REAL / "hf-trainer-state-arshiv-web-financial-news-sentiment-analysis" / "trainer_state.json"

# SGD at a learning rate 1000x too high with strong L2, on 256 images: the loss turns NaN within 4 epochs.
BROKEN = [
    "data.subset=256", "trainer.max_epochs=4", "data.batch_size=16", "optimizer.name=sgd", "optimizer.lr=10",
    "optimizer.backbone_lr=10", "optimizer.momentum=0.9", "optimizer.weight_decay=1.0",
]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = app_module.main(["treat", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_treat_one_round_json(capsys, migrated_store_uri):
    parent = fit(load_config(None, BROKEN)).run_id

    code, out, _ = run_main(capsys, parent, "--rounds", "1", "--json")

    data = json.loads(out)
    assert set(data) == {"schema_version", "run_id", "metric", "mode", "rounds", "best_run_id", "status", "stop_reason"}
    assert (data["schema_version"], data["run_id"], data["metric"]) == (1, parent, "val/acc")
    (r,) = data["rounds"]
    assert r["round"] == 1 and len(r["runs"]) == 1 and r["baseline_runs"] == []
    assert "PD101" in r["findings_before"] and "PD101" in r["cleared"]
    assert r["verdict"] == "better" and r["delta"] > 0 and r["ci"] is None and r["p"] is None
    child = open_client().get_run(r["runs"][0])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert data["best_run_id"] == r["runs"][0]
    assert code == (0 if data["status"] == "healthy" else 1)
    assert data["status"] == ("healthy" if not r["findings_after"] else "improved")


def test_treat_terminal_report(capsys, migrated_store_uri):
    parent = fit(load_config(None, BROKEN)).run_id

    code, out, _ = run_main(capsys, "latest", "--rounds", "1", "-q")

    child = open_client().search_runs(
        [open_client().get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert len(child) == 1
    child_id = child[0].info.run_id
    assert "round 1" in out and "PD101" in out and "cleared" in out and "best val/acc" in out
    assert "time to best" in out and child_id in out
    assert f"best run: {child_id}" in out
    assert code in (0, 1) and (code == 0) == ("(healthy" in out)


def test_imported_log_is_not_trained(capsys, migrated_store_uri):
    code, out, _ = run_main(capsys, str(HF_STATE), "-q")

    assert "hf_trainer terms" in out and "treat cannot train this run" in out
    assert "weight_decay" in out and "x100" in out  # the change in TrainingArguments' words
    client = open_client()
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
    assert code == 1  # the doctor found something to change


def test_imported_log_json_carries_the_tool_prescription(capsys, migrated_store_uri):
    code, out, _ = run_main(capsys, str(HF_STATE), "--json")

    data = json.loads(out)
    assert data["status"] == "cannot_train" and data["rounds"] == [] and code == 1
    assert data["prescription"]["tool"]["name"] == "hf_trainer"


def test_bad_reference_is_one_line_exit_2(capsys, migrated_store_uri):
    code, out, err = run_main(capsys, "no-such-run")

    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_rounds_below_one_is_a_usage_error(capsys, migrated_store_uri):
    code, _, _ = run_main(capsys, str(HF_STATE), "--rounds", "0")
    assert code == 2


class _CtrlCAtEpoch2:
    """A listener that presses Ctrl-C when the second epoch ends."""

    def on_fit_start(self, **_):
        pass

    def on_step(self, **_):
        pass

    def on_epoch_end(self, *, epoch, **_):
        if epoch == 2:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_runs_and_exits_130(capsys, migrated_store_uri, monkeypatch):
    import paramdoctor.training as training

    parent = fit(load_config(None, BROKEN)).run_id
    monkeypatch.setattr(training, "fit", lambda config, **kw: fit(config, **{**kw, "listener": _CtrlCAtEpoch2()}))

    code, out, _ = run_main(capsys, parent, "-q")

    assert code == 130 and "interrupted" in out
    client = open_client()
    (child,) = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert child.info.status == "KILLED"  # kept, marked as stopped: the parent diverged (FAILED) and stays as it was
    assert client.get_run(parent).info.status == "FAILED"
