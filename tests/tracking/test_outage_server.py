"""Outages of a REAL tracking server (`mlflow server` on a loopback port, SQLite behind it), killed and restarted.

MLflow's HTTP retries are turned down for these tests (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``,
``MLFLOW_HTTP_REQUEST_TIMEOUT=2``) so that the server stays down far longer
than the client's retry budget without the tests waiting minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from paramdoctor.cli.app import main
from paramdoctor.tracking import start_run
from paramdoctor.tracking.spool import send_op

MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """An ``mlflow server`` subprocess (its own process group: the uvicorn worker dies with it)."""

    def __init__(self, root: Path, template_db: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copyfile(template_db, root / "server.db")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{self.root}/server.db", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--artifacts-destination", str(self.root / "artifacts")],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    # /health answers before the store is opened; the first store request can take
                    # seconds on a loaded machine, far past the tests' 2 s client timeout. Warm it here.
                    requests.get(f"{self.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=timeout_s)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"mlflow server did not start in {timeout_s} s")

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_mlflow_db):
    srv = Server(tmp_path_factory.mktemp("mlflow-server"), migrated_mlflow_db)
    yield srv
    srv.kill()


@pytest.fixture
def live_server(server, monkeypatch, tmp_path):
    """The server, up; the client's retry budget cut to nothing; a working directory of the test's own."""
    if not server.up:
        server.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.chdir(tmp_path)
    return server


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_an_identical_metric_sent_twice_over_rest_is_stored_once(live_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")  # no outage here: a loaded CI machine may be slow
    client = MlflowClient(tracking_uri=live_server.url)
    run_id = client.create_run(client.create_experiment("twice")).info.run_id
    op = {"op": "metrics", "metrics": [["step/loss", 1.0 / s, 1_000 + s, s] for s in range(1, 1201)]}
    send_op(client, run_id, op)
    send_op(client, run_id, op)  # a crash between a send and its "done" mark sends it again
    assert steps(client, run_id, "step/loss") == list(range(1, 1201))


def test_a_run_that_ends_while_the_server_is_down_is_delivered_by_sync(live_server, tmp_path, capsys):
    spool = tmp_path / "spool"
    events = []
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    with start_run(experiment="outage", spool_dir=spool, on_tracking_event=events.append, flush_every_s=0.2) as run:
        for step in range(1, 51):
            run.sink.log("step/loss", 1.0 / step, step)
        run.sink.log("val/acc", 0.5, 1)
        run.flush()
        live_server.kill()  # down for good, far past the (zero-retry) budget
        for step in range(51, 101):
            run.sink.log("step/loss", 1.0 / step, step)
        run.sink.log("val/acc", 0.6, 2)
        run.flush()
        run.set_tags({"paramdoctor.stop_reason": "max_epochs"})
        run.log_artifact(checkpoint, "checkpoints")
    spool_file = spool / f"{run.run_id}.jsonl"
    assert [e.kind for e in events] == ["unreachable", "left"]
    assert events[0].message == (
        f"tracking server at {live_server.url} unreachable: metrics are kept in {spool_file} and sent when it is back"
    )
    assert run.spooled == 51 and spool_file.exists()

    capsys.readouterr()
    assert main(["sync", "--spool-dir", str(spool)]) == 1  # still down: nothing lost, nothing deleted
    assert "the server is still away" in capsys.readouterr().out and spool_file.exists()

    live_server.start()  # same port, same store
    assert main(["sync", "--spool-dir", str(spool)]) == 0
    out = capsys.readouterr().out
    assert f"run {run.run_id}: delivered " in out and "(51 metrics)" in out
    assert not spool_file.exists() and not (spool / f"{run.run_id}.files").exists()
    client = MlflowClient(tracking_uri=live_server.url)
    assert steps(client, run.run_id, "step/loss") == list(range(1, 101))  # every point, once
    assert steps(client, run.run_id, "val/acc") == [1, 2]
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED" and stored.data.tags["paramdoctor.stop_reason"] == "max_epochs"
    assert {f.path for f in client.list_artifacts(run.run_id, "checkpoints")} == {"checkpoints/best.pt"}


def test_the_spool_is_delivered_in_the_background_when_the_server_comes_back(live_server, tmp_path):
    events = []
    with start_run(experiment="outage", spool_dir=tmp_path / "spool", on_tracking_event=events.append,
                   flush_every_s=0.2) as run:
        run.sink.drain_backoff_s = (0.5, 1.0)  # try again often: the test waits for it
        step = 0
        for step in range(1, 21):
            run.sink.log("step/loss", 1.0 / step, step)
        run.flush()
        live_server.kill()
        for step in range(21, 41):
            run.sink.log("step/loss", 1.0 / step, step)
        run.flush()
        assert run.sink.away and run.spooled == 20
        live_server.start()
        deadline = time.monotonic() + 30
        while run.sink.away and time.monotonic() < deadline:  # training goes on meanwhile
            step += 1
            run.sink.log("step/loss", 1.0 / step, step)
            time.sleep(0.05)
        assert not run.sink.away
        for step in range(step + 1, step + 11):  # straight to the server again
            run.sink.log("step/loss", 1.0 / step, step)
    assert [e.kind for e in events] == ["unreachable", "back"]
    delivered = int(events[1].message.split(": ")[1].split()[0])
    assert events[1].message == f"tracking server back: {delivered} metrics delivered" and delivered >= 20
    client = MlflowClient(tracking_uri=live_server.url)
    assert steps(client, run.run_id, "step/loss") == list(range(1, step + 1))
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert run.spooled == 0 and not (tmp_path / "spool" / f"{run.run_id}.jsonl").exists()
