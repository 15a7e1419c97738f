"""`paramdoctor sync` through its real entry point, against a real SQLite store and an address where no server is."""

from __future__ import annotations

import socket

import pytest
from mlflow.tracking import MlflowClient

from paramdoctor.cli.app import main
from paramdoctor.tracking.spool import ENV_SPOOL_DIR, Spool


@pytest.fixture
def client(migrated_store_uri, monkeypatch) -> MlflowClient:
    monkeypatch.delenv(ENV_SPOOL_DIR, raising=False)
    return MlflowClient(tracking_uri=migrated_store_uri)


def spooled_run(client: MlflowClient, spool_dir, *, uri: str | None = None, points: int = 3) -> str:
    """A RUNNING run whose last writes a trainer left in its spool (the server was away when it ended)."""
    experiment = client.get_experiment_by_name("sync") or client.get_experiment(client.create_experiment("sync"))
    run_id = client.create_run(experiment.experiment_id).info.run_id
    spool = Spool(spool_dir, run_id, tracking_uri=uri or client.tracking_uri)
    spool.append_metrics([("step/loss", 1.0 / s, 1_000 + s, s) for s in range(1, points + 1)])
    spool.append({"op": "tags", "tags": {"paramdoctor.stop_reason": "max_epochs"}})
    spool.append({"op": "terminate", "status": "FINISHED", "end_time": 9_000})
    spool.release()
    return run_id


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_sync_delivers_every_spool_in_order_and_deletes_it(client, tmp_path, capsys):
    spool_dir = tmp_path / ".paramdoctor" / "spool"  # the default, in the working directory
    runs = [spooled_run(client, spool_dir, points=n) for n in (3, 5)]
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    for run_id, n in zip(runs, (3, 5)):
        assert f"run {run_id}: delivered 3 writes ({n} metrics) to {client.tracking_uri}" in out
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["paramdoctor.stop_reason"] == "max_epochs"
        assert sorted(m.step for m in client.get_metric_history(run_id, "step/loss")) == list(range(1, n + 1))
    assert list(spool_dir.iterdir()) == []
    assert main(["sync"]) == 0  # nothing left: a second sync is harmless
    assert "nothing to send" in capsys.readouterr().out


def test_sync_only_the_named_runs(client, tmp_path, monkeypatch, capsys):
    spool_dir = tmp_path / "elsewhere"
    monkeypatch.setenv(ENV_SPOOL_DIR, str(spool_dir))
    first, second = spooled_run(client, spool_dir), spooled_run(client, spool_dir)
    assert main(["sync", second, "0" * 32]) == 0
    out = capsys.readouterr().out
    assert f"run {second}: delivered" in out and f"run {'0' * 32}: nothing spooled in {spool_dir}" in out
    assert (spool_dir / f"{first}.jsonl").exists() and not (spool_dir / f"{second}.jsonl").exists()
    assert client.get_run(first).info.status == "RUNNING"


def test_sync_while_the_server_is_down_exits_1_and_keeps_everything(client, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    spool_dir = tmp_path / "spool"
    run_id = spooled_run(client, spool_dir, uri=f"http://127.0.0.1:{closed_port()}")
    before = (spool_dir / f"{run_id}.jsonl").read_bytes()
    assert main(["sync", "--spool-dir", str(spool_dir)]) == 1
    out = capsys.readouterr().out
    assert f"run {run_id}: delivered nothing" in out and "3 writes (3 metrics) kept" in out
    assert "3 metrics not sent, the server is still away" in out
    assert (spool_dir / f"{run_id}.jsonl").read_bytes() == before
    # the same spool, sent to the store the run really is in
    assert main(["sync", "--spool-dir", str(spool_dir), "--tracking-uri", client.tracking_uri]) == 0
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_spool_held_by_a_running_trainer_is_left_to_it(client, tmp_path, capsys):
    spool_dir = tmp_path / "spool"
    run_id = spooled_run(client, spool_dir)
    trainer = Spool(spool_dir, run_id)
    trainer.acquire()
    assert main(["sync", "--spool-dir", str(spool_dir)]) == 1
    assert "skipped, a running process is still sending its spool" in capsys.readouterr().out
    trainer.release()


def test_bad_input_is_one_line_and_exit_2(client, tmp_path, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main(["sync", "--spool-dir", str(not_a_dir)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: spool directory {not_a_dir} is a file, not a directory (check --spool-dir / PARAMDOCTOR_SPOOL_DIR)"
    )
    assert main(["sync", "../etc"]) == 2
    assert "not a run id" in capsys.readouterr().err
    spool_dir = tmp_path / "spool"
    good = spooled_run(client, spool_dir)
    (spool_dir / "bad.jsonl").write_text('{"paramdoctor_spool": 1}\n{oops\n')
    assert main(["sync", "--spool-dir", str(spool_dir)]) == 2  # the good one still goes
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"error: spool {spool_dir / 'bad.jsonl'} line 2 is not JSON")
    assert client.get_run(good).info.status == "FINISHED"
