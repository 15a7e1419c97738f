"""MlflowSink: batched, background sending to a real SQLite store; outages spooled, nothing lost."""

from __future__ import annotations

import math
import time
import warnings

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from paramdoctor.tracking import MetricsNotSentWarning, MlflowSink, TrackingThreadWarning
from paramdoctor.liveness import TAG_HEARTBEAT


class CountingClient(MlflowClient):
    """A real client that also records the size of every log_batch call (instrumentation)."""

    def __init__(self, *args, fail_times: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []
        self.fail_times = fail_times
        self.attempts = 0

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        self.attempts += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise MlflowException("tracking server unavailable (503)")
        self.batch_sizes.append(len(metrics))
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)


def new_run(client: MlflowClient) -> str:
    experiment_id = client.create_experiment("sink-tests")
    return client.create_run(experiment_id).info.run_id


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("background", [True, False])
def test_metrics_go_in_batches_of_at_most_1000(mlflow_store, background):
    client = CountingClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, flush_every_s=3600, background=background)
    for step in range(1, 1251):
        sink.log("step/loss", 1.0 / step, step)
        sink.log("step/grad_norm", float(step), step)
    sink.close()
    assert client.batch_sizes == [1000, 1000, 500]
    assert sink.sent == 2500 and sink.unsent == [] and sink.errors == []
    losses = history(client, run_id, "step/loss")
    assert [s for s, _ in losses] == list(range(1, 1251))
    assert losses[3][1] == pytest.approx(0.25)


def test_flush_every_s_sends_without_a_flush_call(mlflow_store):
    client = CountingClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, flush_every_s=0.2)
    sink.log("val/acc", 0.5, 1)
    sink.log("val/acc", 0.6, 2)
    assert client.batch_sizes == []  # buffered, not sent one by one
    deadline = time.monotonic() + 5
    while not history(client, run_id, "val/acc") and time.monotonic() < deadline:
        time.sleep(0.05)  # training is quiet: the worker sends the stale buffer on its own
    assert history(client, run_id, "val/acc") == [(1, 0.5), (2, 0.6)]
    assert client.batch_sizes == [2]
    sink.close()
    sink.close()  # idempotent


def test_nan_and_inf_are_stored(mlflow_store):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id)
    sink.log("step/loss", 2.0, 1)
    sink.log("step/loss", float("nan"), 2)
    sink.log("step/grad_norm", float("inf"), 2)
    sink.flush()
    loss = history(client, run_id, "step/loss")
    assert loss[0] == (1, 2.0) and loss[1][0] == 2 and math.isnan(loss[1][1])
    (grad,) = history(client, run_id, "step/grad_norm")
    assert grad[1] >= 1e308  # the SQL store keeps +inf as the largest float
    sink.close()


def test_a_failed_batch_is_retried_once_and_nothing_is_lost(mlflow_store):
    client = CountingClient(tracking_uri=mlflow_store, fail_times=1)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, retry_delay_s=0.0)
    sink.log("step/loss", 1.0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recovered by the retry: no warning
        sink.close()
    assert client.attempts == 2 and len(sink.errors) == 1 and "503" in sink.errors[0]
    assert history(client, run_id, "step/loss") == [(1, 1.0)]


def test_an_outage_spools_the_metrics_says_so_once_and_delivers_them_when_it_ends(mlflow_store, tmp_path):
    client = CountingClient(tracking_uri=mlflow_store, fail_times=2)
    run_id = new_run(client)
    events = []
    sink = MlflowSink(client, run_id, retry_delay_s=0.0, spool_dir=tmp_path / "spool", on_event=events.append)
    sink.log("step/loss", 1.0, 1)
    sink.log("step/loss", 0.5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an outage is one event, not a warning at every flush
        sink.flush()  # worker: 2 tries, both fail: the batch goes to the spool
        sink.log("step/loss", 0.25, 3)
        sink.flush()  # the server is still taken to be away: straight to the spool, in order
    assert sink.away and sink.spooled == 3
    assert [r[3] for r in sink.unsent] == [1, 2, 3]
    spool_file = tmp_path / "spool" / f"{run_id}.jsonl"
    assert spool_file.exists()
    assert [e.kind for e in events] == ["unreachable"]
    assert events[0].message == (
        f"tracking store at {mlflow_store} unreachable: metrics are kept in {spool_file} and sent when it is back"
    )
    sink.close()  # the store answers again: the spool is delivered, in order, and removed
    assert [e.kind for e in events] == ["unreachable", "back"]
    assert events[1].message == "tracking store back: 3 metrics delivered"
    assert sink.spooled == 0 and sink.unsent == [] and not spool_file.exists()
    assert history(client, run_id, "step/loss") == [(1, 1.0), (2, 0.5), (3, 0.25)]


def test_the_background_thread_delivers_the_spool_when_the_store_is_back(mlflow_store, tmp_path):
    client = CountingClient(tracking_uri=mlflow_store, fail_times=2)
    run_id = new_run(client)
    events = []
    sink = MlflowSink(client, run_id, retry_delay_s=0.0, spool_dir=tmp_path, on_event=events.append,
                      drain_backoff_s=(0.1, 0.2))
    sink.log("val/acc", 0.5, 1)
    sink.flush()
    assert sink.spooled == 1
    deadline = time.monotonic() + 10
    while sink.away and time.monotonic() < deadline:
        time.sleep(0.05)  # training goes on; the thread tries again on its own
    assert not sink.away and [e.kind for e in events] == ["unreachable", "back"]
    assert history(client, run_id, "val/acc") == [(1, 0.5)]
    sink.log("val/acc", 0.6, 2)
    sink.close()
    assert history(client, run_id, "val/acc") == [(1, 0.5), (2, 0.6)]


def test_a_run_ending_while_the_store_is_away_keeps_its_spool(mlflow_store, tmp_path):
    client = CountingClient(tracking_uri=mlflow_store, fail_times=10**6)
    run_id = new_run(client)
    events = []
    sink = MlflowSink(client, run_id, retry_delay_s=0.0, spool_dir=tmp_path, on_event=events.append)
    for step in range(1, 6):
        sink.log("step/loss", 1.0 / step, step)
    sink.close()  # no exception: training ends normally
    assert [e.kind for e in events] == ["unreachable", "left"]
    assert f"paramdoctor sync {run_id}" in events[1].message
    assert sink.spooled == 5 and (tmp_path / f"{run_id}.jsonl").exists()


def test_a_refused_metric_is_reported_and_the_rest_of_its_batch_stored(mlflow_store):
    client = CountingClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, background=False)
    sink.log("step/loss", 1.0, 1)
    sink.log("bad key!", 2.0, 1)  # MLflow refuses this name (400): it can never be stored
    sink.log("step/loss", 0.5, 2)
    with pytest.warns(MetricsNotSentWarning, match="1 metrics were refused.*bad key!"):
        sink.close()
    assert history(client, run_id, "step/loss") == [(1, 1.0), (2, 0.5)]
    assert sink.refused == 1 and sink.spooled == 0 and not sink.away


class DyingClient(MlflowClient):
    """A real client whose first log_batch kills the calling thread (instrumentation)."""

    class Crash(BaseException):
        pass

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crashes = 1

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if self.crashes:
            self.crashes -= 1
            raise self.Crash("simulated crash in the metric thread")
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)


def test_a_dying_background_thread_is_reported_and_its_metrics_kept(mlflow_store, tmp_path):
    client = DyingClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, spool_dir=tmp_path, drain_backoff_s=(0.05, 0.1))
    sink.log("step/loss", 1.0, 1)
    sink.log("step/loss", 0.5, 2)
    with pytest.warns(TrackingThreadWarning, match="simulated crash in the metric thread.*started again"):
        sink.flush()
    assert isinstance(sink.worker_error, DyingClient.Crash)
    sink.log("step/loss", 0.25, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once
        sink.close()
    assert history(client, run_id, "step/loss") == [(1, 1.0), (2, 0.5), (3, 0.25)]


def test_heartbeat_is_renewed_from_the_background_thread(mlflow_store, tmp_path):
    class BeatCounter(MlflowClient):
        beats = 0

        def set_tag(self, run_id, key, value, synchronous=None):
            if key == TAG_HEARTBEAT:
                type(self).beats += 1
            return super().set_tag(run_id, key, value, synchronous=synchronous)

    client = BeatCounter(tracking_uri=mlflow_store)
    run_id = new_run(client)
    before = int(time.time())
    sink = MlflowSink(client, run_id, spool_dir=tmp_path, heartbeat_every_s=0.1, flush_every_s=3600)
    deadline = time.monotonic() + 10
    while BeatCounter.beats < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # nothing is logged: the thread beats on its own
    sink.close()
    assert BeatCounter.beats >= 3
    assert int(client.get_run(run_id).data.tags[TAG_HEARTBEAT]) >= before


def test_no_heartbeat_while_the_store_is_away(mlflow_store, tmp_path):
    class DownForMetrics(CountingClient):
        beats = 0

        def set_tag(self, run_id, key, value, synchronous=None):
            type(self).beats += 1
            return super().set_tag(run_id, key, value, synchronous=synchronous)

    client = DownForMetrics(tracking_uri=mlflow_store, fail_times=10**6)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, retry_delay_s=0.0, spool_dir=tmp_path, heartbeat_every_s=0.1,
                      drain_backoff_s=(3600, 3600))
    sink.log("step/loss", 1.0, 1)
    sink.flush()
    assert sink.away
    beats = DownForMetrics.beats
    time.sleep(0.5)  # five beats would be due
    assert DownForMetrics.beats == beats
    sink.close()


def test_high_water_marks_drop_steps_the_run_already_holds(mlflow_store, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, spool_dir=tmp_path, high_water={"step/loss": 3, "val/acc": 1})
    for step in range(1, 6):
        sink.log("step/loss", float(step), step)
    sink.log_metrics({"val/acc": 0.5}, step=1)
    sink.log_metrics({"val/acc": 0.6}, step=2)
    sink.log("best/epoch", 2.0, 0)
    sink.log("val/acc", 0.9, 1, guard=False)  # a summary value meant to be overwritten
    sink.close()
    assert history(client, run_id, "step/loss") == [(4, 4.0), (5, 5.0)]
    assert history(client, run_id, "val/acc") == [(1, 0.9), (2, 0.6)]
    assert sink.replayed == 4


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan")])
def test_flush_every_s_must_be_finite_and_positive(client, value):
    with pytest.raises(ValueError, match="flush_every_s must be a finite number > 0"):
        MlflowSink(client, "0" * 32, flush_every_s=value)


@pytest.mark.parametrize("value", [0, float("inf")])
def test_heartbeat_every_s_must_be_finite_and_positive(client, value):
    with pytest.raises(ValueError, match="heartbeat_every_s"):
        MlflowSink(client, "0" * 32, heartbeat_every_s=value)
