"""``train --resume``: a stopped or killed run carries on in the same MLflow run, with no step twice or missing.

Real trainings on digits, a real SQLite store, real signals (SIGKILL in a subprocess).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from paramdoctor import keys
from paramdoctor.cli.app import main
from paramdoctor.config import load_config
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.training import fit, resume

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "data.subset=256",
    "trainer.telemetry_every_n_steps=2",
    "trainer.flush_every_s=0.2",
    "early_stopping.enabled=false",
    "experiment.name=resume",
]


def _all_points(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in run.data.metrics
    }


def _assert_no_step_twice(points: dict[str, list[tuple[int, float]]]) -> None:
    for key, series in points.items():
        twice = [step for step, n in Counter(step for step, _ in series).items() if n > 1]
        assert not twice, f"{key}: steps logged twice: {twice[:5]}"


class _StopAt:
    """Ctrl-C at a chosen optimizer step of a chosen epoch."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_fit_start(self, **_):
        pass

    def on_step(self, *, epoch, step_in_epoch, **_):
        if (epoch, step_in_epoch) == (self.epoch, self.step):
            raise KeyboardInterrupt

    def on_epoch_end(self, **_):
        pass


def test_a_run_stopped_mid_epoch_resumes_into_the_same_run_and_matches_an_uninterrupted_one(migrated_store_uri, capsys):
    client = MlflowClient(migrated_store_uri)
    config = load_config(None, [*FAST, "trainer.max_epochs=4"])
    whole = fit(config)

    with pytest.raises(KeyboardInterrupt):
        fit(config, listener=_StopAt(epoch=3, step=2))
    stopped = client.search_runs(
        [client.get_experiment_by_name("resume").experiment_id], filter_string="attributes.status = 'KILLED'"
    )[0]
    run_id = stopped.info.run_id
    assert main(["diagnose", run_id, "--no-log", "--json"]) in (0, 1, 3)
    assert f"note: the run was stopped before it ended; this judges the epochs it ran. Carry it on with: paramdoctor train --resume {run_id}" in capsys.readouterr().err

    result = resume(run_id)
    assert result.run_id == run_id and result.status == "FINISHED" and result.resumed_from_epoch == 2
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(run_id).data.tags.get("paramdoctor.resumes") == "1"

    resumed, reference = _all_points(client, run_id), _all_points(client, whole.run_id)
    _assert_no_step_twice(resumed)
    for key in (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.VAL_ACC, keys.STEP_LOSS, keys.step_lr("head")):
        assert [s for s, _ in resumed[key]] == [s for s, _ in reference[key]], f"{key}: steps missing or extra"
        # same seed, same data order, same RNG streams: the very same numbers (CPU float32)
        assert [v for _, v in resumed[key]] == pytest.approx([v for _, v in reference[key]], rel=1e-5), key
    assert [h["val/acc"] for h in result.history] == [h["val/acc"] for h in whole.history]


def test_a_finished_or_diverged_run_is_not_resumed(migrated_store_uri):
    finished = fit(load_config(None, [*FAST, "trainer.max_epochs=1"]))
    with pytest.raises(InputError, match=f"run {finished.run_id} is FINISHED .*model.weights=runs:/{finished.run_id}"):
        resume(finished.run_id)
    with pytest.raises(InputError, match="no such run id, or run name"):
        resume("no-such-run")


def test_resume_takes_no_overrides_and_says_why(migrated_store_uri, capsys):
    assert main(["train", "--resume", "abc", "optimizer.lr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes no config or overrides" in err[0]


def test_sigkill_loses_no_epoch_diagnose_says_interrupted_and_resume_completes_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "paramdoctor", "train", "-q", *FAST, "trainer.max_epochs=5", "trainer.heartbeat_every_s=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = tmp_path / ".paramdoctor" / "checkpoints"
    deadline = time.monotonic() + 120
    import torch

    while time.monotonic() < deadline:
        found = list(checkpoints.glob("*/last.pt"))
        if found and torch.load(found[0], weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"no checkpoint of epoch 2 appeared: {proc.stderr.read().decode()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_id = found[0].parent.name
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody could close it

    # ten minutes later, the heartbeat is stale: no verdict, the resume command instead
    client.set_tag(run_id, keys.TAG_HEARTBEAT, str(time.time() - 600))
    diagnosed = subprocess.run(
        [sys.executable, "-m", "paramdoctor", "diagnose", run_id, "--no-log"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert diagnosed.returncode == 4, diagnosed.stdout + diagnosed.stderr
    assert "INTERRUPTED" in diagnosed.stdout and f"paramdoctor train --resume {run_id}" in diagnosed.stdout.replace("\n", "")

    resumed = subprocess.run(
        [sys.executable, "-m", "paramdoctor", "train", "-q", "--resume", run_id], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert client.get_run(run_id).info.status == "FINISHED"
    points = _all_points(client, run_id)
    _assert_no_step_twice(points)
    assert [s for s, _ in points[keys.VAL_ACC]] == [1, 2, 3, 4, 5]
    steps = [s for s, _ in points[keys.STEP_LOSS]]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 5 * math.ceil(256 / 64)


def test_fine_tuning_from_a_run_on_the_same_data_reuses_its_split_or_is_refused(migrated_store_uri):
    client = MlflowClient(migrated_store_uri)
    parent = fit(load_config(None, [*FAST, "trainer.max_epochs=1", "seed=1"]))
    child = fit(load_config(None, [*FAST, "trainer.max_epochs=1", "seed=2", f"model.weights=runs:/{parent.run_id}"]))
    split = client.get_run(child.run_id).data.tags[keys.TAG_SPLIT]
    assert '"seed": 1' in split  # the parent's split, not seed 2's
    experiment = client.get_experiment_by_name("resume").experiment_id
    before = len(client.search_runs([experiment]))
    with pytest.raises(ConfigError, match=f"model.weights=runs:/{parent.run_id}: that run trained on \\d+ of this run's"):
        fit(load_config(None, [*FAST, "trainer.max_epochs=1", "data.split_seed=2", f"model.weights=runs:/{parent.run_id}"]))
    assert len(client.search_runs([experiment])) == before  # refused before any run exists


def test_a_run_stopped_in_its_first_epoch_resumes_from_epoch_0(migrated_store_uri):
    client = MlflowClient(migrated_store_uri)
    config = load_config(None, [*FAST, "trainer.max_epochs=2", "experiment.name=first-epoch"])
    whole = fit(config)
    with pytest.raises(KeyboardInterrupt):
        fit(config, listener=_StopAt(epoch=1, step=2))
    stopped = client.search_runs(
        [client.get_experiment_by_name("first-epoch").experiment_id], filter_string="attributes.status = 'KILLED'"
    )[0]
    result = resume(stopped.info.run_id)
    assert result.status == "FINISHED" and result.resumed_from_epoch == 0
    points = _all_points(client, result.run_id)
    _assert_no_step_twice(points)
    assert [v for _, v in points[keys.VAL_ACC]] == [h["val/acc"] for h in whole.history]


def test_a_run_stopped_while_closing_after_its_last_epoch_is_only_marked_finished(migrated_store_uri, capsys):
    client = MlflowClient(migrated_store_uri)
    done = fit(load_config(None, [*FAST, "trainer.max_epochs=1"]))
    client.update_run(done.run_id, status="KILLED")  # a signal between the last epoch's summary and the status
    assert main(["train", "--resume", done.run_id]) == 0
    assert "marked FINISHED, nothing to train" in capsys.readouterr().out
    assert client.get_run(done.run_id).info.status == "FINISHED"


def test_resume_with_the_tracking_server_away_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(InputError, match="cannot reach the MLflow store at http://127.0.0.1:9"):
        resume("0123456789abcdef0123456789abcdef")
