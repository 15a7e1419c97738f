"""`paramdoctor tune` through its real entry point: a tiny study, --json, bad input, Ctrl-C and --resume."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow import MlflowClient

import paramdoctor.training as training
from paramdoctor.cli.app import main

TINY = ["data.subset=192", "data.batch_size=16", "trainer.max_epochs=3", "trainer.telemetry_every_n_steps=2"]


def test_a_tiny_study_prints_the_tables_and_writes_a_config_train_accepts(migrated_store_uri, tmp_path, capsys):
    code = main(["tune", *TINY, "--trials", "3", "--sampler", "random", "--study", "tiny", "--out", "best.yaml"])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("paramdoctor tune defaults + 4 overrides: study tiny in sqlite:///", "search space (default)",
                 "optimizer.backbone_lr_ratio", "trial   0", "(baseline)", "best trials (best val/acc, maximize)",
                 "wrote best.yaml; train it with:  paramdoctor train best.yaml", "--study tiny --resume"):
        assert text in out, text
    assert "importance" in out
    assert main(["train", "best.yaml", "--dry-run"]) == 0


def test_json_is_one_object_with_the_documented_fields(migrated_store_uri, tmp_path, capsys):
    code = main(["tune", *TINY, "--trials", "2", "--json", "--study", "js", "--no-doctor-prune", "--pruner", "none"])
    captured = capsys.readouterr()
    assert code == 0
    payload = json.loads(captured.out)
    assert set(payload) == {"schema_version", "study", "storage", "parent_run_id", "experiment", "metric", "direction",
                            "sampler", "pruner", "doctor_prune", "space", "counts", "pruned_by", "best", "importance",
                            "importance_note", "best_config_path", "doctor_check_ms", "guide_notes", "ran", "trials"}
    assert payload["study"] == "js" and payload["doctor_prune"] is False and payload["pruner"] == "none"
    assert payload["doctor_check_ms"] is None and payload["ran"] == [0, 1]
    assert payload["counts"]["complete"] + payload["counts"]["pruned"] == 2
    trial = payload["trials"][0]
    assert set(trial) == {"number", "state", "value", "params", "run_id", "source", "epochs", "duration_s",
                          "pruned_by", "pruned_reason", "failure"}
    assert trial["source"] == "baseline" and trial["epochs"] == 3
    assert payload["importance"] is None and "at least 3 complete trials" in payload["importance_note"]
    assert "search space" not in captured.out  # the terminal report stays out of the JSON


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["--space", "space.yaml"], "error: space.yaml: entry 'optimizer.lr': log: true needs low > 0"),
        (["--resume"], "error: --resume needs --study NAME"),
        (["--join"], "error: --join needs --study NAME"),
        (["--join", "--resume", "--study", "a"], "error: --resume and --join: choose one"),
        (["--sampler", "bayes"], "error: --sampler 'bayes': choose one of tpe, cmaes, gp, nsga2, random, doctor"),
        (["--pruner", "asha"], "error: --pruner 'asha': choose one of median, hyperband, none"),
        (["optimizer.lrr=1"], "error: override optimizer.lrr: unknown config key"),
        (["--storage", "nosuchdb://x", "--study", "a"], "error: --storage nosuchdb://x: cannot open the Optuna storage"),
    ],
)
def test_bad_input_is_exit_2_one_line_and_nothing_trained(tracking_uri, tmp_path, capsys, argv, start):
    (tmp_path / "space.yaml").write_text("optimizer.lr: {type: float, low: 0, high: 1.0, log: true}\n")
    assert main(["tune", *TINY, "--trials", "2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(start) and "\n" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_an_existing_study_needs_resume_and_a_missing_one_refuses_it(tracking_uri, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="taken", storage=storage)
    assert main(["tune", *TINY, "--trials", "1", "--storage", storage, "--study", "taken"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study 'taken' already exists in sqlite:///") and "pass --resume" in err
    assert main(["tune", *TINY, "--trials", "1", "--storage", storage, "--study", "other", "--resume"]) == 2
    assert "--resume: no study 'other' in sqlite:///" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


class _InterruptAtEpoch1:
    def __init__(self, inner):
        self.inner = inner

    def on_fit_start(self, **kw):
        self.inner.on_fit_start(**kw)

    def on_step(self, **kw):
        self.inner.on_step(**kw)

    def on_epoch_end(self, **kw):
        raise KeyboardInterrupt


def test_ctrl_c_is_130_the_trial_failed_and_the_study_resumes(migrated_store_uri, tmp_path, capsys, monkeypatch):
    real_fit = training.fit

    def fit(config, **kwargs):
        if config.experiment.run_name.endswith("-trial1"):
            kwargs["listener"] = _InterruptAtEpoch1(kwargs["listener"])
        return real_fit(config, **kwargs)

    monkeypatch.setattr(training, "fit", fit)
    assert main(["tune", *TINY, "--trials", "3", "--study", "cc", "-q"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: the trial in flight is marked FAIL and its run KILLED; study 'cc' stays in sqlite:///" in err
    assert "carry on with: paramdoctor tune" in err and "--study cc --resume" in err
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.load_study(study_name="cc", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].user_attrs["failure"].startswith("interrupted")
    client = MlflowClient(migrated_store_uri)
    assert client.get_run(study.trials[1].user_attrs["run_id"]).info.status == "KILLED"
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert client.get_run(parent).info.status == "KILLED"

    monkeypatch.setattr(training, "fit", real_fit)
    assert main(["tune", *TINY, "--trials", "1", "--study", "cc", "--resume", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ran"] == [2] and payload["counts"]["fail"] == 1 and payload["parent_run_id"] == parent
    assert client.get_run(parent).info.status == "FINISHED"
