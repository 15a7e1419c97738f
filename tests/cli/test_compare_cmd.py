"""`paramdoctor compare`, end to end through app.main: sample-run exports and a real SQLite MLflow store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.cli import app as app_module

SAMPLES = Path(__file__).resolve().parents[2] / "sample_runs"
HEALTHY = [str(SAMPLES / f"healthy_seed{i}") for i in (1, 2, 3)]
OSCILLATING = [str(SAMPLES / "oscillating_sgd_lr1_batch16")] + [
    str(SAMPLES / f"oscillating_sgd_lr1_batch16_seed{i}") for i in (2, 3)
]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = app_module.main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_one_run_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, HEALTHY[0])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: compare needs at least 2 runs, got 1: name them, e.g. `paramdoctor compare RUN_A RUN_B`"]
    assert list(tmp_path.iterdir()) == []


def test_unknown_group_key_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, *HEALTHY[:2], "--group-by", "sead")
    assert code == 2 and err.startswith("error: --group-by sead: no run has that config key (keys that differ: seed)")


def test_json_shape(capsys, tmp_path):
    picture = tmp_path / "cmp.png"
    code, out, _ = run_main(capsys, HEALTHY[0], str(SAMPLES / "overfit_small_subset"), "--json", "--out", str(picture))
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"schema_version", "metric", "mode", "differing_keys", "runs", "groups", "picture", "logged_to"}
    assert (data["schema_version"], data["metric"], data["mode"], data["groups"], data["logged_to"]) == (1, "val/acc", "max", None, None)
    assert "seed" in data["differing_keys"] and "optimizer.lr" in data["differing_keys"]
    assert data["picture"] == str(picture) and picture.read_bytes()[:4] == b"\x89PNG"
    fields = {"run_id", "run_name", "source", "config_diff", "best", "final", "best_epoch", "time_to_best_s",
              "epochs_run", "status", "findings"}
    healthy, overfit = data["runs"]
    assert set(healthy) == fields and set(healthy["config_diff"]) == set(data["differing_keys"])
    assert (healthy["run_name"], healthy["source"], healthy["status"], healthy["findings"]) == ("healthy_seed1", "paramdoctor", "healthy", [])
    assert healthy["best_epoch"] == 12 and healthy["epochs_run"] == 17 and healthy["time_to_best_s"] > 0
    assert overfit["status"] == "findings" and "PD301" in overfit["findings"]


def test_group_by_seed_mean_and_std(capsys, tmp_path):
    code, out, _ = run_main(capsys, *HEALTHY, *OSCILLATING, "--group-by", "seed", "--json", "--out", str(tmp_path / "g.png"))
    assert code == 0
    data = json.loads(out)
    groups = data["groups"]
    assert [g["n"] for g in groups] == [3, 3]
    assert groups[0]["runs"] == ["healthy_seed1", "healthy_seed2", "healthy_seed3"]
    bests = [r["best"] for r in data["runs"][:3]]
    assert groups[0]["best"]["mean"] == pytest.approx(np.mean(bests))
    assert groups[0]["best"]["std"] == pytest.approx(np.std(bests, ddof=1))
    assert groups[1]["config"]["optimizer.name"] == "sgd"


def test_terminal_table_shows_differing_keys_numbers_and_verdicts(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = run_main(capsys, *HEALTHY[:2], "--metric", "val/loss")
    assert code == 0
    assert "val/loss (↓ better)" in out and "best val/loss" in out and "time to best" in out
    assert "seed" in out and "optimizer.lr" not in out  # only what differs
    assert out.count("healthy") >= 4 and "picture: compare.png" in out
    assert (tmp_path / "compare.png").exists()


def _log_run(client, exp_id: str, name: str, seed: int) -> str:
    from mlflow.entities import Metric, Param

    run_id = client.create_run(exp_id, run_name=name).info.run_id
    now = int(time.time() * 1000)
    metrics = []
    for e in range(1, 11):
        metrics += [
            Metric(keys.TRAIN_LOSS, 1.5 * np.exp(-0.3 * e) + 0.05, now, e),
            Metric(keys.VAL_LOSS, 1.5 * np.exp(-0.3 * e) + 0.1 + 0.01 * seed, now, e),
            Metric(keys.VAL_ACC, 0.95 - 0.5 * np.exp(-0.4 * e) - 0.01 * seed, now, e),
            Metric(keys.EPOCH_TIME, 2.0, now, e),
            Metric(keys.epoch_lr("head"), 1e-3 * (1 - e / 11), now, e),
        ]
    client.log_batch(run_id, metrics=metrics, params=[Param("seed", str(seed)), Param("optimizer.lr", "0.001")])
    client.set_terminated(run_id)
    return run_id


def test_comparison_is_logged_to_the_first_mlflow_run(migrated_store_uri, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(migrated_store_uri)
    exp_id = client.create_experiment("paramdoctor", artifact_location=(tmp_path / "artifacts").as_uri())
    first, second = _log_run(client, exp_id, "seed-a", 1), _log_run(client, exp_id, "seed-b", 2)
    code, out, _ = run_main(capsys, first, "seed-b")
    assert code == 0, out
    assert f"logged paramdoctor/compare.png and paramdoctor/compare.json to run seed-a ({first})" in out
    logged = sorted(f.path for f in client.list_artifacts(first, "paramdoctor"))
    assert logged == ["paramdoctor/compare.json", "paramdoctor/compare.png"]
    assert client.list_artifacts(second) == []
    stored = json.loads(Path(client.download_artifacts(first, "paramdoctor/compare.json", str(tmp_path))).read_text())
    assert stored["logged_to"] == first and [r["run_name"] for r in stored["runs"]] == ["seed-a", "seed-b"]
    assert stored["runs"][0]["time_to_best_s"] == pytest.approx(20.0) and stored["differing_keys"] == ["seed"]
    code, out, _ = run_main(capsys, second, first, "--no-log")
    assert code == 0 and "logged" not in out and client.list_artifacts(second) == []
