"""A buffered metric sink for one MLflow run.

Training calls ``log`` thousands of times; MLflow is a database (SQLite on one
machine, a server for a team). So metrics go into a buffer, and whole batches
(at most 1000 metrics, MLflow's limit per request) are sent with
``MlflowClient.log_batch`` from one background thread: a slow store never
stalls training. A batch is sent when the buffer holds ``max_buffer`` metrics,
when ``flush_every_s`` seconds have passed since the last send, and on
``flush``/``close``.

Nothing is dropped quietly: a batch that fails is retried once after
``retry_delay_s``; if it fails again it is kept, retried at the next ``flush``,
and reported there as a one-line :class:`MetricsNotSentWarning`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from paramdoctor.tracking.values import one_line

MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH

_log = logging.getLogger(__name__)

# (key, value, timestamp_ms, step): cheap to build on the training thread
_Record = tuple[str, float, int, int]


class MetricsNotSentWarning(UserWarning):
    """Some metrics could not be sent to MLflow even after a retry."""


class MlflowSink:
    """Buffers metrics and sends them to one MLflow run in batches.

    ``background=False`` sends on the calling thread (simpler to reason about,
    slower for training). The sink is thread-safe for one writer thread.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        flush_every_s: float = 5.0,
        max_buffer: int = MAX_METRICS_PER_BATCH,
        background: bool = True,
        retry_delay_s: float = 1.0,
    ) -> None:
        if flush_every_s <= 0:
            raise ValueError(f"flush_every_s must be > 0, got {flush_every_s}")
        if not 1 <= max_buffer:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self.client = client
        self.run_id = run_id
        self.flush_every_s = float(flush_every_s)
        self.max_buffer = int(max_buffer)
        self.retry_delay_s = float(retry_delay_s)
        self.errors: list[str] = []  # one line per failed send attempt, oldest first
        self.sent = 0  # metrics stored so far
        self._buffer: list[_Record] = []
        self._unsent: list[_Record] = []
        self._lock = threading.Lock()
        self._last_submit = time.monotonic()
        self._closed = False
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._worker: threading.Thread | None = None
        if background:
            self._worker = threading.Thread(target=self._work, name=f"paramdoctor-mlflow-{run_id[:8]}", daemon=True)
            self._worker.start()

    # -- the training thread's side ------------------------------------------------

    def log(self, key: str, value: float, step: int) -> None:
        """Buffer one metric; NaN and inf are kept (they are evidence)."""
        record = (key, float(value), int(time.time() * 1000), int(step))
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.max_buffer
        if full or time.monotonic() - self._last_submit >= self.flush_every_s:
            self._submit()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.log(key, value, step)

    @property
    def unsent(self) -> list[tuple[str, float, int, int]]:
        """Metrics that failed to send twice and wait for the next flush: (key, value, timestamp_ms, step)."""
        with self._lock:
            return list(self._unsent)

    def flush(self) -> None:
        """Send everything logged so far and wait until it is stored (or has failed)."""
        self._submit()
        if self._worker is not None and self._worker.is_alive():
            done = threading.Event()
            self._queue.put(("sync", done))
            done.wait()
        with self._lock:
            retry, self._unsent = self._unsent, []
        if retry:
            self._send(retry, retry_delay_s=0.0)
        with self._lock:
            lost = len(self._unsent)
        if lost:
            warnings.warn(
                f"{lost} metrics could not be sent to MLflow run {self.run_id} ({self.errors[-1]}); "
                "they are kept and retried at the next flush: check the tracking server (MLFLOW_TRACKING_URI)",
                MetricsNotSentWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        """Flush, then stop the background thread. Safe to call twice."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._worker is not None:
            self._queue.put(("stop", None))
            self._worker.join()
            self._worker = None

    # -- sending -----------------------------------------------------------------------

    def _take_buffer(self) -> list[_Record]:
        with self._lock:
            batch, self._buffer = self._buffer, []
        self._last_submit = time.monotonic()
        return batch

    def _submit(self) -> None:
        batch = self._take_buffer()
        if not batch:
            return
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(("batch", batch))
        else:
            self._send(batch, retry_delay_s=self.retry_delay_s)

    def _work(self) -> None:
        while True:
            try:
                kind, payload = self._queue.get(timeout=self.flush_every_s)
            except queue.Empty:
                # training is quiet (a long evaluation): do not let metrics sit in the buffer
                if time.monotonic() - self._last_submit >= self.flush_every_s:
                    batch = self._take_buffer()
                    if batch:
                        self._send(batch, retry_delay_s=self.retry_delay_s)
                continue
            if kind == "batch":
                self._send(payload, retry_delay_s=self.retry_delay_s)
            elif kind == "sync":
                payload.set()
            else:  # stop
                return

    def _send(self, records: list[_Record], *, retry_delay_s: float) -> None:
        for start in range(0, len(records), MAX_METRICS_PER_BATCH):
            chunk = records[start : start + MAX_METRICS_PER_BATCH]
            metrics = [Metric(key, value, ts, step) for key, value, ts, step in chunk]
            for attempt in (1, 2):
                try:
                    self.client.log_batch(self.run_id, metrics=metrics)
                except Exception as exc:  # a store or network failure: keep the metrics, report later
                    message = one_line(exc, limit=300)
                    with self._lock:
                        self.errors.append(message)
                    if attempt == 1:
                        _log.warning("sending %d metrics to MLflow failed (%s); retrying once", len(chunk), message)
                        if retry_delay_s > 0:
                            time.sleep(retry_delay_s)
                        continue
                    with self._lock:
                        self._unsent.extend(chunk)
                else:
                    with self._lock:
                        self.sent += len(chunk)
                    break
