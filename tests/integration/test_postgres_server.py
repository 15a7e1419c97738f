"""A team's tracking server: ``MLFLOW_TRACKING_URI`` at a real ``mlflow server`` on PostgreSQL, and nothing else changes.

One round trip through every layer, against the server ``team_server``
starts (tests/integration/conftest.py): ``paramdoctor train`` in its own
process; ``diagnose`` writing its verdict back (tags and artifacts read back
through the server, the files on the server's artifact store, never on the
client's disk); ``treat`` training the prescription as a child run;
``import`` of a Lightning log; ``compare``; ``diagnose --experiment`` over
the runs; and ``paramdoctor tune --join`` from two worker processes started
at the same moment on one Optuna study in the same PostgreSQL cluster (an
empty database: they race to create Optuna's tables, the study and its
parent run), while the rest goes on. Every
``--json`` stdout must be exactly one JSON object (MLflow prints run links
to stdout for runs on a server). Finally the runs the server shows are
exactly the rows of PostgreSQL's ``runs`` table.

One test, on purpose: the server takes tens of seconds to start on a loaded
machine, and a module-scoped fixture would start one per xdist worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from paramdoctor.cli.app import main
from paramdoctor.writeback import ARTIFACT_DIR, ARTIFACT_FILES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT, TUNE_EXPERIMENT, STUDY = "team", "team-tune", "shared"
# 3 epochs on 200 images: still improving at the end (PD203), so treat has a prescription to train
TRAIN = ["data.subset=200", "data.batch_size=32", "trainer.max_epochs=3"]
TUNE = ["data.subset=128", "data.batch_size=32", "trainer.max_epochs=2", f"experiment.name={TUNE_EXPERIMENT}"]
TRIALS = (2, 2)  # per worker
TIMEOUT_S = 420

# A Lightning CSVLogger log: training rows, then one validation row per epoch.
LIGHTNING_CSV = "epoch,step,train_loss,val_loss,val_acc\n" + "".join(
    f"{e},{10 * e + 9},{2.2 * 0.7**e:.4f},,\n{e},{10 * e + 9},,{2.0 * 0.75**e:.4f},{0.3 + 0.1 * e:.2f}\n" for e in range(6)
)


def _env(uri: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:]


def _tune_worker(n: int, storage: str, cwd: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, Path]:
    """One ``paramdoctor tune --json`` worker process; its stderr goes to a file."""
    err = cwd / f"worker{n}.err"
    argv = [sys.executable, "-m", "paramdoctor", "tune", *TUNE, "--space", "space.yaml", "--trials", str(TRIALS[n - 1]),
            "--storage", storage, "--study", STUDY, "--sampler", "random", "--pruner", "none", "--no-doctor-prune",
            # each worker its own sampler seed: with the config's seed (tune's default) every worker of a
            # shared study draws the same params
            "--sampler-seed", str(n), "--out", f"best{n}.yaml", "--json", *extra]
    with open(err, "wb") as handle:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=handle), err


def _finish(process: subprocess.Popen, err: Path) -> dict:
    stdout, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, _tail(err.read_text(errors="replace"))
    return json.loads(stdout)  # stdout is the one JSON object, nothing else (no MLflow "View run" lines)


def test_a_team_server_on_postgresql_takes_every_command_and_a_study_shared_by_two_workers(
    team_server, tmp_path, monkeypatch, capsys
):
    import optuna
    import sqlalchemy

    uri = team_server.tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    env = _env(uri)
    client = MlflowClient(tracking_uri=uri)
    storage = team_server.database("optuna")
    assert storage.startswith("postgresql")
    (tmp_path / "space.yaml").write_text("optimizer.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}\n")

    # -- two tune workers share one study; they train in the background while the rest goes on.
    # Both start at once with --join: whichever comes first creates the study, the other joins it.
    started = time.monotonic()
    worker1, err1 = _tune_worker(1, storage, tmp_path, env, "--join")
    worker2, err2 = _tune_worker(2, storage, tmp_path, env, "--join")

    # -- train: a real run, in its own process, as a user types it
    train_started = time.monotonic()
    train = subprocess.run(
        [sys.executable, "-m", "paramdoctor", "train", *TRAIN, f"experiment.name={EXPERIMENT}", "experiment.run_name=trained"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert train.returncode == 0, _tail(train.stdout + train.stderr)
    assert "View run" not in train.stdout  # MLflow's per-run link lines stay out of paramdoctor's output
    train_s = time.monotonic() - train_started
    [trained] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    run_id = trained.info.run_id
    assert trained.info.status == "FINISHED" and trained.data.params["trainer.max_epochs"] == "3"
    assert len(client.get_metric_history(run_id, "val/acc")) == 3
    assert trained.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: the client never sees the server's disk
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml", "checkpoints"}

    # -- diagnose, written back into the run on the server
    code = main(["diagnose", "trained", "-e", EXPERIMENT, "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1 and verdict["run_id"] == run_id and verdict["status"] == "findings", verdict["status"]
    tags = client.get_run(run_id).data.tags
    assert tags["paramdoctor.status"] == verdict["status"]
    assert tags["paramdoctor.findings"] == ",".join(f["code"] for f in verdict["findings"])
    assert {a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)} == {f"{ARTIFACT_DIR}/{f}" for f in ARTIFACT_FILES}
    stored = json.loads(Path(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/diagnosis.json", str(tmp_path))).read_text())
    assert stored["run_id"] == run_id and stored["status"] == verdict["status"]
    on_server = list(team_server.server.artifacts.rglob(f"{run_id}/artifacts/{ARTIFACT_DIR}/diagnosis.json"))
    assert len(on_server) == 1  # on the server's artifact store

    # -- treat: the prescription trained as a child run
    code = main(["treat", run_id, "-e", EXPERIMENT, "--rounds", "1", "--json"])
    treated = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and treated["run_id"] == run_id  # 0 healthy at the end, 1 findings remain
    [child_id] = treated["rounds"][0]["runs"]
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == run_id and child.data.tags["paramdoctor.treat.round"] == "1"
    assert child.info.status == "FINISHED" and treated["rounds"][0]["changes"]
    for key, value in treated["rounds"][0]["changes"].items():
        assert yaml.safe_load(child.data.params[key]) == pytest.approx(value), key

    # -- import another tool's log as a run
    log = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text(LIGHTNING_CSV)
    assert main(["import", str(log), "-e", EXPERIMENT, "--run-name", "lightning"]) == 0
    imported_id = capsys.readouterr().out.strip().splitlines()[-1]
    imported = client.get_run(imported_id)
    assert imported.info.run_name == "lightning" and imported.info.status == "FINISHED"
    assert len(client.get_metric_history(imported_id, "val/acc")) == 6

    # -- compare the two, the picture logged to the first
    assert main(["compare", run_id, imported_id, "--json", "--out", str(tmp_path / "compare.png")]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in compared["runs"]] == [run_id, imported_id]
    assert {f"{ARTIFACT_DIR}/compare.png", f"{ARTIFACT_DIR}/compare.json"} <= {
        a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)}

    # -- diagnose --experiment: every run of it, each verdict written back
    code = main(["diagnose", "--experiment", EXPERIMENT, "--json"])
    table = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and table["experiment"] == EXPERIMENT
    assert {r["run_id"] for r in table["runs"]} == {run_id, imported_id, child_id}
    for diagnosis in table["runs"]:
        assert client.get_run(diagnosis["run_id"]).data.tags["paramdoctor.status"] == diagnosis["status"]

    # -- the shared study: both workers' trials, each one MLflow child run of one parent
    first, second = _finish(worker1, err1), _finish(worker2, err2)
    all_s = time.monotonic() - started
    assert first["study"] == second["study"] == STUDY and first["storage"].startswith("postgresql")
    assert first["parent_run_id"] == second["parent_run_id"]
    assert not set(first["ran"]) & set(second["ran"]) and len(first["ran"]) + len(second["ran"]) == sum(TRIALS)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == sorted(first["ran"] + second["ran"]) == list(range(sum(TRIALS)))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    parent = client.get_run(first["parent_run_id"])
    assert parent.data.tags["paramdoctor.kind"] == "tune" and parent.data.tags["paramdoctor.study"] == STUDY
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert [t.user_attrs["source"] for t in trials].count("baseline") == 1
    tune_runs = client.search_runs([parent.info.experiment_id], "tags.`paramdoctor.kind` = 'tune'",
                                  run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in tune_runs if r.info.lifecycle_stage == "active"] == [parent.info.run_id]
    superseded = {r.info.run_id for r in tune_runs if r.info.lifecycle_stage == "deleted"}  # a candidate that lost
    assert len(superseded) <= 1
    assert all(r.data.tags["paramdoctor.tune.superseded_by"] == parent.info.run_id
               for r in tune_runs if r.info.run_id in superseded)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == len(trials)
    by_run = {c.info.run_id: c for c in children}
    for trial in trials:
        child = by_run[trial.user_attrs["run_id"]]  # one run per trial, and no run without a trial
        assert child.data.tags["paramdoctor.tune.trial"] == str(trial.number)
        assert child.data.tags["paramdoctor.kind"] == "tune-trial" and child.info.status == "FINISHED"
        assert float(child.data.params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])

    # -- and all of it is in PostgreSQL: the runs the server shows are the rows of its runs table
    engine = sqlalchemy.create_engine(team_server.backend_uri)
    try:
        with engine.connect() as conn:
            query = sqlalchemy.text("SELECT run_uuid FROM runs WHERE lifecycle_stage = :stage")
            rows = {r[0] for r in conn.execute(query, {"stage": "active"})}
            deleted = {r[0] for r in conn.execute(query, {"stage": "deleted"})}
    finally:
        engine.dispose()
    shown = {r.info.run_id for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    assert rows == shown == {run_id, imported_id, child_id, parent.info.run_id, *by_run}
    assert deleted == superseded
    print(f"\ntrain {train_s:.1f} s; the whole round trip with the 2-worker study {all_s:.1f} s "
          f"({len(superseded)} candidate parent run deleted)")
