"""A whole experiment read from a REAL tracking server (``mlflow server`` on a loopback port, SQLite behind it).

The server's bulk history endpoint must give what one request per run and
key gives, and both what the server's own database holds.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from paramdoctor import keys
from paramdoctor.sources import mlflow_source, record_from_mlflow, records_for_experiment, sql_bulk
from tests.sources.mlflow_runs import healthy_curves, make_run, overfitting_curves

MLFLOW = Path(sys.executable).parent / "mlflow"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_mlflow_db):
    root = tmp_path_factory.mktemp("read-server")
    shutil.copyfile(migrated_mlflow_db, root / "server.db")
    url = f"http://127.0.0.1:{_free_port()}"
    with open(root / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{root}/server.db", "--host", "127.0.0.1",
             "--port", url.rsplit(":", 1)[1], "--workers", "1", "--artifacts-destination", str(root / "artifacts")],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    requests.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=120)
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.2)
        yield url, root
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def experiment(server, tmp_path_factory):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    url, root = server
    client = MlflowClient(tracking_uri=url)
    folder = tmp_path_factory.mktemp("read-runs")
    curves = overfitting_curves(10, 30)  # 300 step points per step series
    curves[keys.TRAIN_LOSS][3] = (4, float("nan"))
    ids = [
        make_run(client, experiment="team", run_name="a", curves=curves, tmp_dir=folder),
        make_run(client, experiment="team", run_name="b", curves=healthy_curves(7), tmp_dir=folder),
        make_run(client, experiment="team", run_name="c", curves=healthy_curves(4), with_config_artifact=False, tmp_dir=folder),
    ]
    now = int(time.time() * 1000)
    client.log_batch(ids[1], metrics=[Metric(keys.VAL_LOSS, 9.0, now + 5_000, 2), Metric(keys.VAL_LOSS, float("inf"), now, 6)])
    return client, ids, root


def _same(a, b):
    assert a.to_dict() == b.to_dict() and list(a.series) == list(b.series)
    for key, s in a.series.items():
        assert np.array_equal(s.values, b.series[key].values, equal_nan=True)


def test_the_servers_bulk_endpoint_reads_what_one_request_per_key_reads(experiment, monkeypatch):
    client, ids, _ = experiment
    asked = []
    real = mlflow_source._server_bulk(client._tracking_client.store)
    assert real is not None  # a tracking server: the bulk endpoint is used

    def counting(store):
        def bulk(run_ids, key, max_results):
            asked.append(key)
            return real(run_ids, key, max_results)

        return bulk

    monkeypatch.setattr(mlflow_source, "_server_bulk", counting)
    bulk = records_for_experiment("team", client)
    assert len(asked) == len({k for r in bulk for k in r.series})  # one request per key for these 3 runs
    monkeypatch.setattr(mlflow_source, "_server_bulk", lambda store: None)
    one_by_one = records_for_experiment("team", client)
    assert [r.run_id for r in bulk] == [r.run_id for r in one_by_one] == ids[::-1]
    for a, b in zip(bulk, one_by_one):
        _same(a, b)
    by_name = {r.run_name: r for r in bulk}
    assert math.isnan(by_name["a"].series[keys.TRAIN_LOSS].values[3])
    assert by_name["b"].series[keys.VAL_LOSS].values[[1, 5]].tolist() == [9.0, math.inf]
    assert by_name["a"].series[keys.STEP_LOSS].values.size == 300
    # config.yaml through the server's artifact proxy, as for one run; the run without one falls back to its params
    for record in bulk:
        assert record.config == record_from_mlflow(record.run_id, client).config
    assert by_name["a"].config["optimizer"]["name"] and by_name["c"].config["optimizer"]["name"]


def test_a_missing_or_unreachable_config_artifact_is_none_not_an_error(experiment, monkeypatch):
    client, ids, _ = experiment
    [run] = [r for r in mlflow_source._search_all(client, [client.get_experiment_by_name("team").experiment_id])
             if r.info.run_id == ids[2]]  # logged without config.yaml
    assert mlflow_source._load_configs(client, [run, run]) == [None, None]
    broken = sql_bulk.Run(
        sql_bulk.RunInfo("x", "x", "0", "FINISHED", "mlflow-artifacts:/nowhere/x/artifacts"),
        sql_bulk.RunData(),
    )
    assert mlflow_source._load_configs(client, [broken]) == [None]


def test_a_server_that_refuses_the_bulk_endpoint_is_read_run_by_run(experiment, monkeypatch):
    client, _, _ = experiment
    import mlflow.utils.rest_utils as rest_utils

    real = rest_utils.http_request

    def refusing(host_creds, endpoint, method, **kwargs):
        if endpoint.endswith("get-history-bulk"):
            response = requests.models.Response()
            response.status_code = 404
            return response
        return real(host_creds, endpoint, method, **kwargs)

    expected = records_for_experiment("team", client)
    monkeypatch.setattr(rest_utils, "http_request", refusing)
    for a, b in zip(records_for_experiment("team", client), expected):
        _same(a, b)


def test_the_servers_database_read_directly_holds_the_same_curves(experiment):
    """``MLFLOW_TRACKING_URI=sqlite:///server.db`` (or ``postgresql://``) takes the SQL path: the same runs and curves."""
    from mlflow.tracking import MlflowClient

    client, _, root = experiment
    direct = MlflowClient(tracking_uri=f"sqlite:///{root}/server.db")
    over_http = records_for_experiment("team", client)
    in_the_db = records_for_experiment("team", direct)
    assert [r.run_id for r in in_the_db] == [r.run_id for r in over_http]
    for a, b in zip(in_the_db, over_http):
        assert list(a.series) == list(b.series) and a.params == b.params and a.tags == b.tags
        for key, s in a.series.items():
            assert np.array_equal(s.values, b.series[key].values, equal_nan=True)


def test_search_pages_read_as_json_give_what_search_runs_gives(experiment):
    """The server's runs/search read as JSON: the same runs, in the same order, with the same fields a record reads."""
    client, ids, _ = experiment
    experiment_id = client.get_experiment_by_name("team").experiment_id
    search = mlflow_source._server_search(client._tracking_client.store)
    assert search is not None  # a tracking server
    pages = []
    token = None
    while True:  # pages of 2: the page token is followed as search_runs follows it
        page, token = search([experiment_id], 2, ["attributes.start_time DESC"], token)
        pages.append(page)
        if not token:
            break
    assert [len(p) for p in pages] == [2, 1]
    ours = [run for page in pages for run in page]
    theirs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
    assert [r.info.run_id for r in ours] == [r.info.run_id for r in theirs] == ids[::-1]
    for a, b in zip(ours, theirs):
        assert (a.info.run_name, a.info.experiment_id, a.info.status, a.info.artifact_uri) == (
            b.info.run_name, b.info.experiment_id, b.info.status, b.info.artifact_uri)
        assert a.data.params == b.data.params and a.data.tags == b.data.tags
        assert a.data.metrics.keys() == b.data.metrics.keys()
        for key, value in a.data.metrics.items():
            assert value == b.data.metrics[key] or (math.isnan(value) and math.isnan(b.data.metrics[key]))


def test_reading_an_experiment_page_by_page_gives_what_reading_it_whole_gives(experiment, monkeypatch):
    client, ids, _ = experiment
    pipelined = records_for_experiment("team", client)

    def whole(client, experiment_id):  # one page, read in this thread
        runs = [r for r in client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])]
        yield runs, mlflow_source._bulk_histories(client, runs), mlflow_source._load_configs(client, runs)

    monkeypatch.setattr(mlflow_source, "_remote_pages", whole)
    for a, b in zip(pipelined, records_for_experiment("team", client), strict=True):
        _same(a, b)
        assert a.config == b.config and a.run_name == b.run_name and a.status == b.status


def test_absent_databricks_modules_are_recorded_once_and_present_ones_left_alone(monkeypatch):
    import importlib.util

    names = ("dbruntime", "pyspark", "IPython")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    absent = [name for name in names if importlib.util.find_spec(name) is None]
    assert "dbruntime" in absent  # Databricks' runtime is never installed here
    mlflow_source._skip_absent_databricks_probes()
    for name in absent:
        assert name in sys.modules and sys.modules[name] is None
        with pytest.raises(ImportError):
            __import__(name)
    monkeypatch.setitem(sys.modules, "pyspark", "present")  # an installed module is never replaced
    mlflow_source._skip_absent_databricks_probes()
    assert sys.modules["pyspark"] == "present"


def test_pages_come_in_search_order_and_a_failing_page_raises_where_it_would_have_come(experiment, monkeypatch):
    client, ids, _ = experiment
    experiment_id = client.get_experiment_by_name("team").experiment_id

    whole = mlflow_source._search_pages

    def small_pages(client, experiment_ids):  # pages of one run, as the server would page a large experiment
        for page in whole(client, experiment_ids):
            for run in page:
                yield [run]

    monkeypatch.setattr(mlflow_source, "_search_pages", small_pages)
    pages = list(mlflow_source._remote_pages(client, experiment_id))
    assert [[r.info.run_id for r in runs] for runs, _, _ in pages] == [[i] for i in ids[::-1]]
    assert [sorted(h) for _, h, _ in pages] == [[i] for i in ids[::-1]]
    real = mlflow_source._load_configs

    def failing(client, runs):
        if runs[0].info.run_id == ids[1]:
            raise RuntimeError("the server went away")
        return real(client, runs)

    monkeypatch.setattr(mlflow_source, "_load_configs", failing)
    got = []
    with pytest.raises(RuntimeError, match="went away"):
        for record in mlflow_source.iter_records_for_experiment("team", client):
            got.append(record.run_id)
    assert got == [ids[2]]  # the page before the failing one came through
