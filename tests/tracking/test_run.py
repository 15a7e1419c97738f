"""start_run against real SQLite stores, read back through MlflowClient: outages, resuming, liveness tags."""

from __future__ import annotations

import math
import time

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.tracking import flatten_params, resolve_tracking_uri, start_run
from paramdoctor.tracking.run import TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY, TAG_RESUMES
from paramdoctor.tracking.spool import Spool, deliver
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


# --- liveness, outages, resuming ----------------------------------------------------------


class FlakyClient(MlflowClient):
    """A real client whose writes fail like an unreachable server while ``down`` is set (instrumentation)."""

    down = False

    def _check(self):
        if self.down:
            raise MlflowException("API request to http://tracking:5000 failed with exception Connection refused")

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        self._check()
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    def set_tag(self, *args, **kwargs):
        self._check()
        return super().set_tag(*args, **kwargs)

    def log_artifact(self, *args, **kwargs):
        self._check()
        return super().log_artifact(*args, **kwargs)

    def log_text(self, *args, **kwargs):
        self._check()
        return super().log_text(*args, **kwargs)

    def set_terminated(self, *args, **kwargs):
        self._check()
        return super().set_terminated(*args, **kwargs)


def test_the_run_carries_its_heartbeat_from_the_start(client):
    before = int(time.time())
    with start_run(experiment="exp", heartbeat_every_s=12.5) as run:
        tags = client.get_run(run.run_id).data.tags
        assert int(tags[TAG_HEARTBEAT]) >= before and tags[TAG_HEARTBEAT_EVERY] == "12.5"
        assert run.resumed is False


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0])
def test_non_finite_intervals_are_refused_before_any_run_exists(client, value):
    with pytest.raises(ValueError, match="flush_every_s must be a finite number"):
        with start_run(experiment="exp", flush_every_s=value):
            pass
    assert client.get_experiment_by_name("exp") is None


def test_an_outage_mid_run_spools_every_write_and_the_run_ends_normally(mlflow_store, tmp_path):
    client = FlakyClient(tracking_uri=mlflow_store)
    events = []
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    with start_run(experiment="exp", client=client, spool_dir=tmp_path / "spool", on_tracking_event=events.append) as run:
        run.sink.retry_delay_s = 0.0
        run.sink.log(keys.STEP_LOSS, 1.0, 1)
        run.flush()
        client.down = True  # the tracking server goes away; training goes on
        for step in (2, 3, 4):
            run.sink.log(keys.STEP_LOSS, 1.0 / step, step)
        run.flush()
        run.set_tags({keys.TAG_STOP_REASON: "max_epochs"})  # none of these raises
        run.log_artifact(checkpoint, artifact_path="checkpoints")
        run.log_text("# report", "diagnosis.md")
        run.log_metrics({keys.BEST_EPOCH: 3.0})
    checkpoint.unlink()  # the trainer's temporary file: the spool holds a copy
    assert [e.kind for e in events] == ["unreachable", "left"]
    assert run.spooled == 4 and run.spool_path == str(tmp_path / "spool" / f"{run.run_id}.jsonl")
    assert client.get_run(run.run_id).info.status == "RUNNING"  # the status itself waits in the spool

    client.down = False  # the server is back: deliver the spool as `paramdoctor sync` does
    spool = Spool(tmp_path / "spool", run.run_id)
    spool.acquire()
    assert deliver(spool, client).remaining == 0
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.tags[keys.TAG_STOP_REASON] == "max_epochs" and stored.data.metrics[keys.BEST_EPOCH] == 3.0
    assert sorted(m.step for m in client.get_metric_history(run.run_id, keys.STEP_LOSS)) == [1, 2, 3, 4]
    assert {f.path for f in client.list_artifacts(run.run_id, "checkpoints")} == {"checkpoints/best.pt"}
    assert "diagnosis.md" in {f.path for f in client.list_artifacts(run.run_id)}
    assert not (tmp_path / "spool" / f"{run.run_id}.jsonl").exists()


def test_a_failure_while_the_server_is_away_keeps_reason_and_status(mlflow_store, tmp_path):
    client = FlakyClient(tracking_uri=mlflow_store)
    with pytest.raises(RuntimeError, match="loss exploded"):
        with start_run(experiment="exp", client=client, spool_dir=tmp_path) as run:
            run.sink.retry_delay_s = 0.0
            client.down = True
            run.sink.log(keys.STEP_LOSS, float("nan"), 7)
            raise RuntimeError("loss exploded")
    client.down = False
    spool = Spool(tmp_path, run.run_id)
    spool.acquire()
    deliver(spool, client)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FAILED" and stored.data.tags[keys.TAG_FAILURE] == "loss exploded"


def test_resume_reopens_the_run_and_logs_no_step_twice(client):
    params = {"optimizer.lr": 0.001, "trainer.max_epochs": 4}
    with pytest.raises(KeyboardInterrupt):
        with start_run(experiment="exp", params=params, tags={"x": "1"}) as first:
            for step in range(1, 8):  # epoch 1 complete (steps 1-4), epoch 2 cut short at step 7
                first.sink.log(keys.STEP_LOSS, 1.0 / step, step)
            first.sink.log(keys.VAL_ACC, 0.5, 1)
            first.log_metrics({keys.BEST_EPOCH: 1.0})
            raise KeyboardInterrupt
    assert client.get_run(first.run_id).info.status == "KILLED"

    with start_run(experiment="exp", params={**params, "data.extra": "new"}, resume_run_id=first.run_id) as run:
        assert run.resumed and run.run_id == first.run_id and run.run_name == first.run_name
        assert client.get_run(run.run_id).info.status == "RUNNING"
        for step in range(5, 13):  # epoch 2 replayed from its start, then epochs 3 and 4
            run.sink.log(keys.STEP_LOSS, 1.0 / step, step)
        for epoch in (1, 2, 3):
            run.sink.log(keys.VAL_ACC, 0.5 + epoch / 10, epoch)  # epoch 1 again: dropped
        run.log_metrics({keys.BEST_EPOCH: 3.0})  # summary: overwritten, not dropped
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.tags[TAG_RESUMES] == "1" and stored.data.params["data.extra"] == "new"
    steps = sorted(m.step for m in client.get_metric_history(run.run_id, keys.STEP_LOSS))
    assert steps == list(range(1, 13))  # each step once
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, keys.VAL_ACC)) == [
        (1, 0.5), (2, pytest.approx(0.7)), (3, pytest.approx(0.8))
    ]
    assert stored.data.metrics[keys.BEST_EPOCH] == 3.0

    with start_run(experiment="exp", params=params, resume_run_id=run.run_id):
        pass
    assert client.get_run(run.run_id).data.tags[TAG_RESUMES] == "2"


def test_resume_clears_the_reason_of_an_earlier_failure(client):
    with pytest.raises(RuntimeError):
        with start_run(experiment="exp") as first:
            raise RuntimeError("CUDA error: an illegal memory access")
    with start_run(experiment="exp", resume_run_id=first.run_id):
        pass
    stored = client.get_run(first.run_id)
    assert stored.info.status == "FINISHED" and keys.TAG_FAILURE not in stored.data.tags


def test_resume_delivers_the_spool_a_crash_left_first(mlflow_store, tmp_path):
    client = FlakyClient(tracking_uri=mlflow_store)
    with start_run(experiment="exp", client=client, spool_dir=tmp_path) as first:
        first.sink.retry_delay_s = 0.0
        first.sink.log(keys.STEP_LOSS, 1.0, 1)
        first.flush()
        client.down = True
        first.sink.log(keys.STEP_LOSS, 0.5, 2)  # spooled: the server is away when the process ends
    client.down = False
    with start_run(experiment="exp", client=client, spool_dir=tmp_path, resume_run_id=first.run_id) as run:
        run.sink.log(keys.STEP_LOSS, 0.4, 2)  # step 2 is in the run now (from the spool): dropped
        run.sink.log(keys.STEP_LOSS, 0.25, 3)
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, keys.STEP_LOSS)) == [
        (1, 1.0), (2, 0.5), (3, 0.25)
    ]
    assert not (tmp_path / f"{run.run_id}.jsonl").exists()


def test_resume_refusals_are_one_line_input_errors(client):
    with start_run(experiment="exp", params={"optimizer.lr": 0.001}) as done:
        pass
    with start_run(experiment="other") as elsewhere:
        pass
    gone = client.create_run(client.get_experiment_by_name("exp").experiment_id).info.run_id
    client.delete_run(gone)
    cases = [
        (dict(resume_run_id="f" * 32), "no such run"),
        (dict(resume_run_id=gone), "it is deleted"),
        (dict(resume_run_id=elsewhere.run_id), "belongs to experiment id"),
        (dict(resume_run_id=done.run_id, params={"optimizer.lr": 0.01}), "param optimizer.lr is '0.001' in the run but '0.01' now"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message) as info:
            with start_run(experiment="exp", **kwargs):
                pass
        assert "\n" not in str(info.value)
    assert client.get_run(done.run_id).info.status == "FINISHED"  # a refused resume changes nothing
