"""`paramdoctor ui`: a real `mlflow server` on the local store, the tracking server's address, one-line errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from paramdoctor.cli import ui_cmd
from paramdoctor.cli.app import main
from paramdoctor.cli.ui_cmd import experiment_url, run_url, ui_base_url
from paramdoctor.tracking import get_or_create_experiment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_ui_address_from_the_environment(monkeypatch):
    monkeypatch.delenv(ui_cmd.UI_URL_ENV, raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- addresses ---------------------------------------------------------------------------------


def test_links_open_mlflows_model_training_view():
    assert run_url("http://h:5000/", "3", "ab12") == "http://h:5000/#/experiments/3/runs/ab12?workflowType=machine_learning"
    assert experiment_url("http://h:5000/#/experiments", "3") == "http://h:5000/#/experiments/3?workflowType=machine_learning"


def test_the_ui_address_comes_from_the_setting_then_the_tracking_server(monkeypatch):
    assert ui_base_url("sqlite:///mlflow.db") is None and ui_base_url(None) is None
    assert ui_base_url("https://mlflow.example.org/") == "https://mlflow.example.org"
    monkeypatch.setenv(ui_cmd.UI_URL_ENV, "http://127.0.0.1:5055/")
    assert ui_base_url("sqlite:///mlflow.db") == ui_base_url("http://internal:5000") == "http://127.0.0.1:5055"


# --- the command -------------------------------------------------------------------------------


def test_with_a_tracking_server_it_prints_the_servers_address_and_starts_nothing(monkeypatch, capsys):
    port = free_port()  # nothing listens there: the experiment's page is left out, quickly
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}/")
    t0 = time.perf_counter()
    assert main(["ui"]) == 0
    assert time.perf_counter() - t0 < 20
    out = capsys.readouterr().out
    assert f"MLflow UI (the tracking server's, nothing started): http://127.0.0.1:{port}\n" in out
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the quick client's settings are put back


def test_a_port_in_use_is_one_line_and_exit_2(tracking_uri, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: port {port} on 127.0.0.1 is in use (another MLflow UI?): choose another with --port"


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "70000"], ["--port", "five"]])
def test_a_bad_port_is_a_usage_error(tracking_uri, capsys, args):
    assert main(["ui", *args]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_databricks_store_is_named_not_served(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    assert main(["ui"]) == 2
    assert "its UI is the Databricks workspace" in capsys.readouterr().err


def test_it_serves_the_local_store_prints_the_address_and_stops_cleanly(migrated_store_uri, tmp_path):
    """A real `mlflow server` on the test's store: it answers, knows paramdoctor's experiment, stops on SIGTERM."""
    experiment_id = get_or_create_experiment(MlflowClient(migrated_store_uri), "paramdoctor")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": migrated_store_uri, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop(ui_cmd.UI_URL_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "paramdoctor", "ui", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Ctrl-C stops it"):
                break
        out = "\n".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"MLflow UI on {migrated_store_uri}: {base}" in out, out
        assert f"paramdoctor runs: {base}/#/experiments/{experiment_id}?workflowType=machine_learning" in out
        assert f"export PARAMDOCTOR_UI_URL={base}" in out
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            assert response.status == 200
        url = f"{base}/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b'"mlflow.experimentKind"' in response.read()  # the store the UI shows is the run's store
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with socket.socket() as again:  # the server and its workers are gone: the port is free
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    assert not re.search(r"Traceback", proc.stdout.read() or "")
