"""The SQL read of a whole experiment gives exactly what the client API gives, against a real SQLite store."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.sources import mlflow_source, records_for_experiment, sql_bulk
from tests.sources.mlflow_runs import healthy_curves, make_run, new_store, overfitting_curves


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An experiment with the corners a bulk read can get wrong."""
    from mlflow.entities import Metric, RunTag

    folder = tmp_path_factory.mktemp("sql-bulk")
    uri, client = new_store(folder)
    ids = {
        "overfit": make_run(client, experiment="bulk", run_name="overfit", curves=overfitting_curves(12, 5), tmp_dir=folder),
        "healthy": make_run(client, experiment="bulk", run_name="healthy", curves=healthy_curves(8), tmp_dir=folder),
        "no-config": make_run(client, experiment="bulk", run_name="no-config", with_config_artifact=False, tmp_dir=folder),
        "failed": make_run(client, experiment="bulk", run_name="failed", curves=healthy_curves(3), status="FAILED", tmp_dir=folder),
        "deleted": make_run(client, experiment="bulk", run_name="deleted", curves=healthy_curves(4), tmp_dir=folder),
        "other-experiment": make_run(client, experiment="elsewhere", run_name="x", curves=healthy_curves(4), tmp_dir=folder),
    }
    client.delete_run(ids["deleted"])
    # a diverged run: NaN and infinity are evidence and must survive
    curves = healthy_curves(6)
    curves[keys.TRAIN_LOSS][-2] = (5, float("nan"))
    curves[keys.VAL_LOSS][-1] = (6, float("inf"))
    curves[keys.TRAIN_ACC][-1] = (6, float("-inf"))
    ids["diverged"] = make_run(client, experiment="bulk", run_name="diverged", curves=curves, tmp_dir=folder)
    # steps logged twice: the later timestamp wins, and on equal timestamps the larger value (the later row)
    now = int(time.time() * 1000)
    client.log_batch(ids["healthy"], metrics=[
        Metric(keys.VAL_LOSS, 9.0, now + 10_000, 3),
        Metric(keys.VAL_LOSS, 7.0, now + 20_000, 4),
        Metric(keys.VAL_LOSS, 8.0, now + 20_000, 4),
        Metric("extra/only_this_run", 1.5, now, 0),
    ])
    # a run with no name of its own, named by its tag, and with a start time equal to another's
    same = client.get_run(ids["failed"]).info.start_time
    exp = client.get_experiment_by_name("bulk").experiment_id
    run = client.create_run(exp, start_time=same)
    client.log_batch(run.info.run_id, metrics=[Metric(keys.VAL_LOSS, 1.0, now, 1)], tags=[RunTag("mlflow.runName", "tagged")])
    ids["tie"] = run.info.run_id
    return uri, client, ids


def _through_the_client(monkeypatch, client, name):
    with monkeypatch.context() as m:
        m.setattr(sql_bulk, "sql_store", lambda _client: None)
        return records_for_experiment(name, client)


def _same(a, b):
    assert a.to_dict() == b.to_dict()
    assert list(a.series) == list(b.series)  # the same keys in the same order
    for key, s in a.series.items():
        assert np.array_equal(s.steps, b.series[key].steps)
        assert np.array_equal(s.values, b.series[key].values, equal_nan=True)
        assert np.array_equal(np.signbit(s.values), np.signbit(b.series[key].values))
    assert list(a.params.items()) == list(b.params.items())
    assert list(a.tags.items()) == list(b.tags.items())
    assert a.config == b.config and a.meta == b.meta


def test_the_sql_read_is_the_client_read_run_for_run(store, monkeypatch):
    _, client, ids = store
    assert sql_bulk.sql_store(client) is not None
    fast = records_for_experiment("bulk", client)
    slow = _through_the_client(monkeypatch, client, "bulk")
    assert [r.run_id for r in fast] == [r.run_id for r in slow]  # newest first, ties by run id
    assert ids["deleted"] not in {r.run_id for r in fast} and ids["other-experiment"] not in {r.run_id for r in fast}
    for a, b in zip(fast, slow):
        _same(a, b)
    by_id = {r.run_id: r for r in fast}
    assert by_id[ids["tie"]].run_name == "tagged"
    assert by_id[ids["healthy"]].series[keys.VAL_LOSS].values[2:4].tolist() == [9.0, 8.0]
    diverged = by_id[ids["diverged"]].series
    assert math.isnan(diverged[keys.TRAIN_LOSS].values[-2]) and diverged[keys.VAL_LOSS].values[-1] == math.inf
    assert diverged[keys.TRAIN_ACC].values[-1] == -math.inf
    assert by_id[ids["no-config"]].config["optimizer"]["name"]  # rebuilt from params, as the client path does


def test_only_mlflows_own_sql_store_takes_the_sql_path(store, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    class Workspaces(SqlAlchemyStore):  # a subclass may filter what a user sees: the client API decides
        pass

    subclassed = SimpleNamespace(_tracking_client=SimpleNamespace(store=object.__new__(Workspaces)))
    assert sql_bulk.sql_store(subclassed) is None
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert sql_bulk.sql_store(MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())) is None


def test_configs_are_read_in_place_from_local_artifacts_and_downloaded_otherwise(store, monkeypatch):
    _, client, ids = store
    runs = {r.run_id: r for r in records_for_experiment("bulk", client)}
    run = client.get_run(ids["overfit"])
    local = mlflow_source._local_artifact(run.info.artifact_uri, "config.yaml")
    assert local is not None and local.is_file()
    # the same config through the artifact repository (what a server's mlflow-artifacts:/ URIs take)
    monkeypatch.setattr(mlflow_source, "_local_artifact", lambda uri, name: None)
    assert mlflow_source._load_configs(client, [run])[0] == runs[ids["overfit"]].config
    assert mlflow_source._local_artifact("mlflow-artifacts:/1/abc/artifacts", "config.yaml") is None


def test_a_store_without_the_sql_path_reads_histories_many_at_a_time(store, monkeypatch):
    """The one-request-per-key path (a tracking server) runs requests concurrently and keeps each run's keys sorted."""
    _, client, ids = store
    store_obj = client._tracking_client.store
    monkeypatch.setattr(type(store_obj), "get_metric_history_bulk", None, raising=False)
    slow = {r.run_id: r for r in _through_the_client(monkeypatch, client, "bulk")}
    fast = {r.run_id: r for r in records_for_experiment("bulk", client)}
    for run_id, record in fast.items():
        _same(record, slow[run_id])
        assert list(record.series) == sorted(record.series)
