"""start_run against real SQLite stores, read back through MlflowClient."""

from __future__ import annotations

import math

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.tracking import flatten_params, resolve_tracking_uri, start_run
from paramdoctor.tracking.values import TRUNCATED_MARKER


class CountingClient(MlflowClient):
    """A real client that also counts log_batch calls (instrumentation)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.param_batches: list[int] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if params:
            self.param_batches.append(len(params))
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)


def test_params_tags_artifacts_and_metrics_are_stored(mlflow_store, tmp_path):
    client = CountingClient(tracking_uri=mlflow_store)
    params = {f"model.p{i:03d}": i for i in range(250)}
    params.update({"optimizer.lr": 0.001, "model.weights": None, "data.note": "x" * 7000})
    (tmp_path / "notes.txt").write_text("hello")
    with start_run(
        experiment="paramdoctor-tests",
        run_name="baseline",
        params=params,
        tags={keys.TAG_MODEL: "resnet18"},
        artifacts_text={"config.yaml": "optimizer:\n  lr: 0.001\n"},
        client=client,
    ) as run:
        assert client.get_run(run.run_id).info.status == "RUNNING"
        for step in (1, 2, 3):
            run.sink.log(keys.STEP_LOSS, 1.0 / step, step)
        run.log_metrics({keys.BEST_EPOCH: 2.0}, step=0)
        run.set_tags({keys.TAG_STOP_REASON: "max_epochs"})
        run.log_artifact(tmp_path / "notes.txt", artifact_path="extra")
        run.log_text("# report", "diagnosis.md")

    assert client.param_batches == [100, 100, 53]
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == run.run_name == "baseline"
    assert stored.info.experiment_id == run.experiment_id
    assert client.get_experiment_by_name("paramdoctor-tests").experiment_id == run.experiment_id
    p = stored.data.params
    assert len(p) == 253 and p["optimizer.lr"] == "0.001" and p["model.weights"] == "null" and p["model.p007"] == "7"
    assert len(p["data.note"]) == 6000 and p["data.note"].endswith(TRUNCATED_MARKER)
    assert stored.data.tags[keys.TAG_MODEL] == "resnet18"
    assert stored.data.tags[keys.TAG_STOP_REASON] == "max_epochs"
    assert keys.TAG_PARENT_RUN not in stored.data.tags
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, keys.STEP_LOSS)) == [
        (1, 1.0),
        (2, 0.5),
        (3, pytest.approx(1 / 3)),
    ]
    assert stored.data.metrics[keys.BEST_EPOCH] == 2.0
    paths = {f.path for f in client.list_artifacts(run.run_id)} | {f.path for f in client.list_artifacts(run.run_id, "extra")}
    assert {"config.yaml", "diagnosis.md", "extra/notes.txt"} <= paths
    assert client.download_artifacts(run.run_id, "config.yaml", str(tmp_path)) and "lr: 0.001" in (
        tmp_path / "config.yaml"
    ).read_text()


def test_experiment_is_reused_and_child_runs_name_their_parent(client):
    with start_run(experiment="exp") as parent:
        pass
    with start_run(experiment="exp", parent_run_id=parent.run_id) as child:
        pass
    assert child.experiment_id == parent.experiment_id
    assert client.get_run(child.run_id).data.tags[keys.TAG_PARENT_RUN] == parent.run_id
    assert parent.run_name  # MLflow names unnamed runs


def test_exception_marks_the_run_failed_with_a_one_line_reason_and_keeps_metrics(client):
    with pytest.raises(RuntimeError, match="loss exploded"):
        with start_run(experiment="exp", flush_every_s=3600) as run:
            run.sink.log(keys.STEP_LOSS, float("nan"), 7)
            raise RuntimeError("loss exploded at step 7\nsecond line of detail")
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags[keys.TAG_FAILURE] == "loss exploded at step 7"
    (metric,) = client.get_metric_history(run.run_id, keys.STEP_LOSS)
    assert metric.step == 7 and math.isnan(metric.value)


def test_keyboard_interrupt_marks_the_run_killed_and_is_reraised(client):
    with pytest.raises(KeyboardInterrupt):
        with start_run(experiment="exp", flush_every_s=3600) as run:
            run.sink.log(keys.STEP_LOSS, 0.5, 1)
            raise KeyboardInterrupt
    stored = client.get_run(run.run_id)
    assert stored.info.status == "KILLED"
    assert keys.TAG_FAILURE not in stored.data.tags
    assert [m.value for m in client.get_metric_history(run.run_id, keys.STEP_LOSS)] == [0.5]


def test_a_users_fluent_run_is_left_alone(client):
    own_experiment = client.create_experiment("users-own")
    with mlflow.start_run(experiment_id=own_experiment) as own:
        with start_run(experiment="exp") as run:
            pass
        assert mlflow.active_run().info.run_id == own.info.run_id
    assert run.run_id != own.info.run_id and run.experiment_id != own_experiment
    assert client.get_run(own.info.run_id).info.status == "FINISHED"


def test_deleted_experiment_is_a_one_line_input_error(client):
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(InputError, match="'gone' is deleted: restore it") as info:
        with start_run(experiment="gone"):
            pass
    assert "\n" not in str(info.value)


def test_unusable_store_is_a_one_line_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/sub/mlflow.db"  # a directory under a file: cannot exist
    with pytest.raises(InputError, match="cannot open an MLflow run .*MLFLOW_TRACKING_URI") as info:
        with start_run(experiment="exp", tracking_uri=uri):
            pass
    assert "\n" not in str(info.value)


def test_tracking_uri_resolution(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri() == "http://tracking.example:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"  # MLflow's own default, in the working directory


def test_flatten_params():
    tree = {"optimizer": {"lr": 1e-3, "betas": [0.9, 0.999]}, "model": {"weights": None, "pretrained": True}, "seed": 0}
    assert flatten_params(tree) == {
        "optimizer.lr": "0.001",
        "optimizer.betas": "[0.9, 0.999]",
        "model.weights": "null",
        "model.pretrained": "true",
        "seed": "0",
    }
