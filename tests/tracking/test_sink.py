"""MlflowSink: batched, background sending to a real SQLite store, nothing lost."""

from __future__ import annotations

import math
import time
import warnings

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from paramdoctor.tracking import MetricsNotSentWarning, MlflowSink


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


def test_an_outage_is_reported_at_flush_and_the_metrics_sent_when_it_ends(mlflow_store):
    client = CountingClient(tracking_uri=mlflow_store, fail_times=4)
    run_id = new_run(client)
    sink = MlflowSink(client, run_id, retry_delay_s=0.0)
    sink.log("step/loss", 1.0, 1)
    sink.log("step/loss", 0.5, 2)
    with pytest.warns(MetricsNotSentWarning, match="2 metrics could not be sent.*503"):
        sink.flush()  # worker: 2 tries, flush: 2 more; all fail
    assert len(sink.unsent) == 2
    sink.log("step/loss", 0.25, 3)
    sink.close()  # the server is back: kept metrics go too
    assert sink.unsent == []
    assert history(client, run_id, "step/loss") == [(1, 1.0), (2, 0.5), (3, 0.25)]


def test_bad_arguments(client):
    with pytest.raises(ValueError, match="flush_every_s"):
        MlflowSink(client, "0" * 32, flush_every_s=0)
