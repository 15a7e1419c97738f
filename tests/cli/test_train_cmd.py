"""`paramdoctor train` through its real entry point: dry run, one-line errors, a short run, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow import MlflowClient

from paramdoctor.cli.app import main
from paramdoctor.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_prints_the_resolved_config_and_logs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["train", "--dry-run", "optimizer.lr=3e-4", "trainer.max_epochs=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optimizer"]["lr"] == 3e-4 and printed["trainer"]["max_epochs"] == 7
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_override_is_one_line_exit_2_and_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["train", "optimizer.lrr=3e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: override optimizer.lrr: unknown config key (did you mean 'optimizer.lr'?)"
    assert not (tmp_path / "mlflow.db").exists()


def test_a_config_file_plus_overrides_trains_and_prints_the_summary(tracking_uri, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  subset: 128\ntrainer:\n  max_epochs: 1\noptimizer:\n  lr: 2e-3\n")
    assert main(["train", str(path), "experiment.run_name=cli-run", "-q"]) == 0
    out = capsys.readouterr().out
    assert "FINISHED" in out and "paramdoctor diagnose" in out
    client = MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("paramdoctor").experiment_id])[0]
    assert run.info.run_name == "cli-run" and run.data.params["optimizer.lr"] == "0.002"
    logged = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert load_config(logged).optimizer.lr == 2e-3  # the logged config trains as is


def test_sigterm_ends_the_run_as_killed_with_its_metrics_kept(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "paramdoctor", "train", "-q", "trainer.max_epochs=500", "data.subset=128",
         "trainer.flush_every_s=0.2", "early_stopping.enabled=false"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    client = MlflowClient(uri)
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:  # wait until an epoch has been recorded
        time.sleep(0.5)
        try:
            exp = client.get_experiment_by_name("paramdoctor")
            runs = client.search_runs([exp.experiment_id]) if exp else []
        except Exception:  # the store is still being created
            continue
        if runs and "val/acc" in runs[0].data.metrics:
            run_id = runs[0].info.run_id
            break
    assert run_id, proc.communicate(timeout=30)[0].decode()[-2000:]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out[-2000:]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["paramdoctor.stop_reason"] == "interrupted"
    assert client.get_metric_history(run_id, "val/acc")
