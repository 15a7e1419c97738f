"""A local SQLite store is absent or complete: concurrent creators, interrupted creators, half-migrated stores."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from paramdoctor.errors import InputError
from paramdoctor.tracking import start_run
from paramdoctor.tracking.store import prepare_store, store_state

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    from paramdoctor.tracking import start_run

    with start_run(experiment="shared", tracking_uri=sys.argv[1]) as run:
        run.sink.log("step/loss", 1.0, 1)
    print(run.run_id, flush=True)
    """
)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # experiments' default artifact location is ./mlruns


def launch(tmp_path: Path, uri: str) -> subprocess.Popen:
    script = tmp_path / "make_run.py"
    if not script.exists():
        script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), uri],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def one_run_works(uri: str) -> None:
    with start_run(experiment="after", tracking_uri=uri) as run:
        run.sink.log("step/loss", 0.5, 1)
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.run_id, "step/loss")] == [0.5]


def test_four_processes_creating_the_store_at_once_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [launch(tmp_path, uri) for _ in range(4)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(out.strip() for out, _ in outputs)
    assert all(r.data.metrics["step/loss"] == 1.0 for r in runs)
    assert [p.name for p in tmp_path.iterdir() if ".creating-" in p.name] == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_process_stopped_while_creating_the_store_leaves_none_or_a_whole_one(tmp_path, sig):
    delays = (0.0, 0.15, 0.3, 0.6)  # after the first file of the store appears: early, middle and late in its migrations
    attempts = []
    for attempt in range(len(delays)):  # side by side, each in a directory of its own
        where = tmp_path / str(attempt)
        where.mkdir()
        attempts.append((where, launch(where, f"sqlite:///{where}/mlflow.db")))
    seen: dict[int, float] = {}  # attempt -> when its store began to appear
    stopped: set[int] = set()
    deadline = time.monotonic() + 120
    while len(stopped) < len(attempts) and time.monotonic() < deadline:
        now = time.monotonic()
        for i, (where, proc) in enumerate(attempts):
            if i in stopped:
                continue
            if proc.poll() is not None:  # done before its moment came: a whole store
                stopped.add(i)
            elif i not in seen:
                if (where / "mlflow.db").exists() or any(".creating-" in p.name for p in where.iterdir()):
                    seen[i] = now
            elif now >= seen[i] + delays[i]:
                proc.send_signal(sig)
                stopped.add(i)
        time.sleep(0.002)
    for where, proc in attempts:
        proc.communicate(timeout=60)
        db = where / "mlflow.db"
        assert not db.exists() or store_state(db) == "healthy"
        one_run_works(f"sqlite:///{db}")  # the next command is never stuck with a half-made store


def half_migrated_store(path: Path) -> None:
    """A store with an experiment, whose migration was cut off right after copying a table (as MLflow leaves it)."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config, create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "a8c4a736bde6")  # the next one starts with a batch copy of latest_metrics
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES (1, 'kept', ?, 'active')",
            (str(path.parent / "artifacts"),),
        )
        conn.execute("CREATE TABLE _alembic_tmp_latest_metrics AS SELECT * FROM latest_metrics")


def test_a_half_migrated_store_with_data_is_repaired_and_keeps_it(tmp_path):
    db = tmp_path / "mlflow.db"
    half_migrated_store(db)
    assert store_state(db) == "broken"
    uri = f"sqlite:///{db}"
    with start_run(experiment="kept", tracking_uri=uri) as run:
        run.sink.log("step/loss", 0.5, 1)
    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment_by_name("kept").experiment_id == "1" == run.experiment_id
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert store_state(db) == "healthy"


def test_a_half_migrated_store_that_cannot_be_repaired_is_one_line_naming_it(tmp_path):
    db = tmp_path / "mlflow.db"
    half_migrated_store(db)
    with sqlite3.connect(db) as conn:  # cut off later: the original table already dropped, only the copy left
        conn.execute("DROP TABLE latest_metrics")
    with pytest.raises(InputError, match=f"the MLflow store {db} was left half-migrated: table latest_metrics exists only") as info:
        prepare_store(f"sqlite:///{db}")
    assert "\n" not in str(info.value) and "back up" in str(info.value)


def test_an_empty_or_unfinished_store_without_runs_is_made_anew(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")
    prepare_store(f"sqlite:///{db}")
    assert store_state(db) == "healthy"
    half = tmp_path / "half.db"
    half_migrated_store(half)
    with sqlite3.connect(half) as conn:
        conn.execute("DELETE FROM experiments")  # nothing in it anyone made
    prepare_store(f"sqlite:///{half}")
    assert store_state(half) == "healthy"


def test_readers_do_not_create_a_store_and_other_uris_are_left_alone(tmp_path):
    prepare_store(f"sqlite:///{tmp_path}/absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()
    prepare_store("http://tracking.example:5000")
    prepare_store("postgresql://user@db/mlflow")
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="is not a readable SQLite database"):
        prepare_store(f"sqlite:///{tmp_path}/garbage.db")
