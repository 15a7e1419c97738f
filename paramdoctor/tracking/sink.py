"""A buffered metric sink for one MLflow run that never loses what it was given.

Training calls ``log`` thousands of times; MLflow is a database (SQLite on one
machine, a server for a team). So metrics go into a buffer, and whole batches
(at most 1000 metrics, MLflow's limit per request) are sent with
``MlflowClient.log_batch`` from one background thread: a slow store never
stalls training. A batch is sent when the buffer holds ``max_buffer`` metrics,
when ``flush_every_s`` seconds have passed since the last send, and on
``flush``/``close``.

Outages. A batch that fails is retried once after ``retry_delay_s`` (on top
of MLflow's own HTTP retries, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``); if it
fails again for a reason that may pass (connection refused, timeout, 5xx),
the tracking server is taken to be *away*: the batch, and every later write
of the run (metrics, tags, params, artifacts, the final status), goes to the
run's local spool (:mod:`paramdoctor.tracking.spool`), in order, and training
goes on. The background thread tries to deliver the spool with a growing
pause (``drain_backoff_s``: 1 s doubling to 60 s; for an HTTP server a 2 s
``/health`` probe comes first, so a dead server costs no retry budget), and
when it is all stored, writing goes straight to the server again. The user
hears of it exactly twice, through ``on_event`` (or this module's logger):
``tracking server at URI unreachable: metrics are kept in SPOOL and sent when
it is back`` and ``tracking server back: N metrics delivered``. A run that
ends while the server is away leaves its spool on disk (one more event says
so); ``paramdoctor sync`` sends it later. Writes MLflow refuses (4xx: a bad
value, a changed param) are not kept: they could never be stored; metrics
refused that way are reported at the next ``flush`` as a one-line
:class:`MetricsNotSentWarning`, other writes raise.

Heartbeat. With ``heartbeat_every_s``, the background thread sets the tag
``paramdoctor.heartbeat`` (unix seconds) at least that often, skipped while
the server is away: a RUNNING run whose heartbeat is stale has lost its
process (:mod:`paramdoctor.liveness`).

Resumed runs. ``high_water`` maps a metric key to the highest step the run
already holds; later records of that key at or below it are dropped
(counted in ``replayed``), so a resumed run that replays part of an epoch
logs no step twice. ``log(..., guard=False)`` bypasses it (summary metrics,
which are meant to be overwritten).

A background thread that dies of an unexpected error is never silent: what it
held goes to the spool, its error is kept (``worker_error``) and reported at
the next ``flush``/``close`` as a :class:`TrackingThreadWarning`, and the
thread is started again (at most 3 times; then metrics are sent from the
calling thread).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from mlflow.tracking import MlflowClient

from paramdoctor.liveness import TAG_HEARTBEAT
from paramdoctor.tracking.spool import (
    MAX_METRICS_PER_BATCH,
    Spool,
    deliver,
    is_permanent,
    resolve_spool_dir,
    send_op,
    store_metrics,
)
from paramdoctor.tracking.values import one_line

_log = logging.getLogger(__name__)

# (key, value, timestamp_ms, step): cheap to build on the training thread
_Record = tuple[str, float, int, int]

MAX_WORKER_RESTARTS = 3
PROBE_TIMEOUT_S = 2.0
DEFAULT_DRAIN_BACKOFF_S = (1.0, 60.0)  # first pause, longest pause


class MetricsNotSentWarning(UserWarning):
    """Some metrics were refused by MLflow (a bad value): they cannot be stored."""


class TrackingThreadWarning(UserWarning):
    """The sink's background thread died of an unexpected error (its metrics were kept)."""


class TrackingEvent(NamedTuple):
    """Something the user should hear about, once: ``kind`` and a ready-to-print line.

    Kinds: ``unreachable``, ``back``, ``left`` (the run ended with writes still
    spooled), ``dropped`` (the spool's bound dropped step points), ``refused``
    (the server refuses a spooled write), ``thread_died``.
    """

    kind: str
    message: str


class MlflowSink:
    """Buffers metrics and sends them to one MLflow run in batches, spooling them while the server is away.

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
        spool: Spool | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        heartbeat_every_s: float | None = None,
        on_event: Callable[[TrackingEvent], None] | None = None,
        high_water: Mapping[str, int] | None = None,
        drain_backoff_s: tuple[float, float] = DEFAULT_DRAIN_BACKOFF_S,
        close_timeout_s: float = 30.0,
    ) -> None:
        if not (isinstance(flush_every_s, (int, float)) and math.isfinite(flush_every_s) and flush_every_s > 0):
            raise ValueError(f"flush_every_s must be a finite number > 0, got {flush_every_s}")
        if heartbeat_every_s is not None and not (math.isfinite(heartbeat_every_s) and heartbeat_every_s > 0):
            raise ValueError(f"heartbeat_every_s must be a finite number > 0 (or None), got {heartbeat_every_s}")
        if not 1 <= max_buffer:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self.client = client
        self.run_id = run_id
        self.tracking_uri = str(getattr(client, "tracking_uri", "") or "")
        self.flush_every_s = float(flush_every_s)
        self.max_buffer = int(max_buffer)
        self.retry_delay_s = float(retry_delay_s)
        self.heartbeat_every_s = None if heartbeat_every_s is None else float(heartbeat_every_s)
        self.on_event = on_event
        self.drain_backoff_s = (float(drain_backoff_s[0]), float(drain_backoff_s[1]))
        self.close_timeout_s = float(close_timeout_s)
        self.spool = spool or Spool(resolve_spool_dir(spool_dir), run_id, tracking_uri=self.tracking_uri or None)
        if self.spool.on_drop is None:
            self.spool.on_drop = self._dropped
        self.errors: list[str] = []  # one line per failed send attempt, oldest first
        self.sent = 0  # metrics stored so far (directly or from the spool)
        self.refused = 0  # metrics MLflow refused (4xx): never stored
        self.replayed = 0  # records dropped because the run already held their step (resumed runs)
        self.worker_error: BaseException | None = None
        self._high_water = dict(high_water or {})
        self._buffer: list[_Record] = []
        self._lock = threading.Lock()  # the buffer
        self._state = threading.RLock()  # away or not, and appends to the spool while away
        self._drain_lock = threading.Lock()  # one delivery of the spool at a time
        self._away = False
        self._announced = False  # the "unreachable" line was said for this outage
        self._delivered_in_outage = 0
        self._backoff = self.drain_backoff_s[0]
        self._next_drain = 0.0
        self._refused_reported = 0
        self._refusal_said = False
        self._last_submit = time.monotonic()
        self._next_beat = self._last_submit if self.heartbeat_every_s else math.inf  # the first beat at once
        self._closed = False
        self._stopping = False
        self._in_hand: list[_Record] = []
        self._restarts = 0
        self._worker_reported = True
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._background = background
        if self.spool.path.exists():  # left by an earlier process of this run: deliver it before anything new
            self.spool.acquire()
            if self.spool.pending:
                self._away = True
        if background:
            self._start_worker()

    # -- the training thread's side ------------------------------------------------

    def log(self, key: str, value: float, step: int, *, guard: bool = True) -> None:
        """Buffer one metric; NaN and inf are kept (they are evidence).

        ``guard=False``: keep it even at a step the resumed run already holds.
        """
        step = int(step)
        if guard and self._high_water:
            mark = self._high_water.get(key)
            if mark is not None and step <= mark:
                self.replayed += 1
                return
        record = (key, float(value), int(time.time() * 1000), step)
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.max_buffer
        now = time.monotonic()
        if full or now - self._last_submit >= self.flush_every_s:
            self._submit()
        if self._worker is None and (now >= self._next_beat or (self._away and now >= self._next_drain)):
            self._duties()  # no background thread: the heartbeat and the spool are looked after from here

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, guard: bool = True) -> None:
        for key, value in metrics.items():
            self.log(key, value, step, guard=guard)

    @property
    def away(self) -> bool:
        """True while the tracking server is taken to be unreachable (writes go to the spool)."""
        return self._away

    @property
    def spooled(self) -> int:
        """Metric points on local disk, waiting for the server."""
        return self.spool.points

    @property
    def unsent(self) -> list[tuple[str, float, int, int]]:
        """Metrics not stored yet and kept in the spool: (key, value, timestamp_ms, step)."""
        return self.spool.records() if self.spool.path.exists() else []

    def write(self, op: dict[str, Any]) -> str:
        """Perform one non-metric operation (tags, params, text, artifact, terminate) now, or spool it.

        Returns ``"stored"`` or ``"spooled"``. Raises what MLflow raises when it
        refuses the write itself (a changed param, a bad tag key).
        """
        with self._state:
            away = self._away
        if not away:
            try:
                self._send_with_retry(lambda: send_op(self.client, self.run_id, op))
                return "stored"
            except Exception as exc:
                if is_permanent(exc):
                    raise
                self._go_away(exc)
        with self._state:
            if op["op"] == "artifact":
                self.spool.append_artifact(op["local_path"], op.get("artifact_path"))
            else:
                self.spool.append(op)
        return "spooled"

    def flush(self) -> None:
        """Send everything logged so far and wait until it is stored or spooled."""
        self._check_worker()
        self._submit()
        worker = self._worker
        if worker is not None and worker.is_alive():
            done = threading.Event()
            self._queue.put(("sync", done))
            while not done.wait(0.2):
                if not worker.is_alive():  # died meanwhile: what it held is in the spool
                    break
        self._check_worker()
        if not self._worker_alive():
            self._duties()
        self._report_refused()

    def close(self) -> None:
        """Flush, stop the background thread, try once more to deliver the spool. Safe to call twice."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._stopping = True
        worker, self._worker = self._worker, None
        if worker is not None and worker.is_alive():
            self._queue.put(("stop", None))
            worker.join(self.close_timeout_s)
            if worker.is_alive():
                _log.warning("the MLflow thread of run %s did not stop within %.0f s; leaving it", self.run_id, self.close_timeout_s)
        self._check_worker(restart=False)
        if self._away:
            self._drain(final=True)
        self._report_refused()
        if self.spool.pending:
            self._emit(
                "left",
                f"run {self.run_id} ended while the tracking server is away: {self.spool.points} metrics "
                f"({self.spool.pending} writes) are kept in {self.spool.path}; send them with `paramdoctor sync {self.run_id}`",
            )
        self.spool.release()

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
        if self._worker_alive():
            self._queue.put(("batch", batch))
        else:
            self._send_metrics(batch)

    def _worker_alive(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    def _send_metrics(self, records: list[_Record]) -> None:
        """Store ``records`` (in batches of 1000), or spool them when the server is away."""
        start = 0
        while start < len(records):
            with self._state:
                if self._away:
                    self.spool.append_metrics(records[start:])
                    return
            chunk = records[start : start + MAX_METRICS_PER_BATCH]
            outcome: list = []
            try:
                self._send_with_retry(lambda: outcome.append(store_metrics(self.client, self.run_id, chunk)))
            except Exception as exc:  # may pass (server away), or the run itself refuses writes
                self._go_away(exc)
                continue  # spooled at the top of the loop, with everything after it
            stored, refused, reason = outcome[-1]
            self.sent += stored
            if refused:
                self.refused += len(refused)
                with self._lock:
                    self.errors.append(reason or "refused")
            start += MAX_METRICS_PER_BATCH

    def _send_with_retry(self, send: Callable[[], None]) -> None:
        for attempt in (1, 2):
            try:
                send()
                return
            except Exception as exc:  # a store or network failure
                message = one_line(exc, limit=300)
                with self._lock:
                    self.errors.append(message)
                if attempt == 2 or is_permanent(exc):
                    raise
                _log.info("a write to MLflow run %s failed (%s); retrying once", self.run_id, message)
                if self.retry_delay_s > 0:
                    time.sleep(self.retry_delay_s)

    # -- outages ------------------------------------------------------------------------

    def _go_away(self, exc: BaseException) -> None:
        with self._state:
            first = not self._away
            self._away = True
            if first:
                self._backoff = self.drain_backoff_s[0]
                self._next_drain = time.monotonic() + self._backoff
                self._delivered_in_outage = 0
        if first and not self._announced:
            self._announced = True
            self._emit(
                "unreachable",
                f"tracking {self._server_word()} at {self.tracking_uri} unreachable: metrics are kept in "
                f"{self.spool.path} and sent when it is back",
            )
            _log.debug("first failed write to run %s: %s", self.run_id, one_line(exc))

    def _server_word(self) -> str:
        return "server" if self.tracking_uri.startswith(("http://", "https://")) else "store"

    def _reachable(self) -> bool:
        """For an HTTP server, a quick ``/health`` probe (no retries); other stores are simply tried."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        import requests

        try:
            response = requests.get(self.tracking_uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
        except requests.RequestException:
            return False
        return response.status_code < 500

    def _drain(self, *, final: bool = False) -> None:
        """Deliver the spool in order; when it is empty, write straight to the server again."""
        if not self._drain_lock.acquire(blocking=final, timeout=self.close_timeout_s if final else -1):
            return
        try:
            if not self._reachable():
                self._schedule_next_drain()
                return
            result = deliver(self.spool, self.client, should_stop=None if final else lambda: self._stopping)
            self.sent += result.points
            self._delivered_in_outage += result.points
            with self._state:
                back = self.spool.pending == 0
                if back:
                    self._away = False
            if back:
                if self._announced:
                    self._emit("back", f"tracking {self._server_word()} back: {self._delivered_in_outage} metrics delivered")
                self._announced = False
                self._backoff = self.drain_backoff_s[0]
                return
            if result.error:
                with self._lock:
                    self.errors.append(result.error)
            if result.refused and not self._refusal_said:
                self._refusal_said = True
                self._emit(
                    "refused",
                    f"MLflow refuses a spooled write of run {self.run_id} ({result.error}); "
                    f"it stays in {self.spool.path}: fix the run, or remove the file",
                )
            self._schedule_next_drain()
        finally:
            self._drain_lock.release()

    def _schedule_next_drain(self) -> None:
        self._next_drain = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.drain_backoff_s[1])

    def _dropped(self, now: int, total: int) -> None:
        self._emit(
            "dropped",
            f"the spool of run {self.run_id} reached its bound ({self.spool.max_bytes // 2**20} MiB): "
            f"the oldest {now} per-step points were dropped ({total} so far); epoch metrics are all kept",
        )

    # -- the background thread ----------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name=f"paramdoctor-mlflow-{self.run_id[:8]}", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - never silent: kept, spooled, reported at the next flush
            self._thread_died(exc)

    def _loop(self) -> None:
        while True:
            try:
                kind, payload = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                kind, payload = "tick", None
            if kind == "batch":
                self._in_hand = payload
                self._send_metrics(payload)
                self._in_hand = []
            elif kind == "sync":
                payload.set()
            elif kind == "stop":
                return
            self._duties()

    def _duties(self) -> None:
        """What is due besides the queue: a stale buffer, the heartbeat, another try at the spool."""
        now = time.monotonic()
        if now - self._last_submit >= self.flush_every_s:
            # training is quiet (a long evaluation): do not let metrics sit in the buffer
            batch = self._take_buffer()
            if batch:
                self._send_metrics(batch)
        if now >= self._next_beat and not self._stopping:
            self._next_beat = now + (self.heartbeat_every_s or math.inf)
            if not self._away:
                self._beat()
        if self._away and now >= self._next_drain and not self._stopping:
            self._drain()

    def _beat(self) -> None:
        try:
            self.client.set_tag(self.run_id, TAG_HEARTBEAT, str(int(time.time())))
        except Exception as exc:  # noqa: BLE001 - a missed beat is no loss; the metrics path notices outages
            _log.debug("heartbeat of run %s not written: %s", self.run_id, one_line(exc))

    def _wait_s(self) -> float:
        now = time.monotonic()
        wake = min(self._last_submit + self.flush_every_s, self._next_beat)
        if self._away:
            wake = min(wake, self._next_drain)
        return min(max(wake - now, 0.01), 3600.0)

    def _thread_died(self, exc: BaseException) -> None:
        """Keep the error, and put what the thread held (and what waits for it) in the spool."""
        self.worker_error = exc
        self._worker_reported = False
        records = list(self._in_hand)
        self._in_hand = []
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "batch":
                records.extend(payload)
            elif kind == "sync":
                payload.set()
        if records:
            try:
                with self._state:
                    self.spool.append_metrics(records)
                    self._away = True  # what follows goes after them, in order
                    self._next_drain = 0.0
            except Exception as spool_exc:  # noqa: BLE001 - the disk failed too: keep them in memory
                _log.error("could not spool %d metrics of run %s: %s", len(records), self.run_id, one_line(spool_exc))
                with self._lock:
                    self._buffer[:0] = records

    def _check_worker(self, *, restart: bool = True) -> None:
        """Report a dead background thread once, and start it again (a few times)."""
        if self._worker_reported or self.worker_error is None:
            return
        self._worker_reported = True
        exc = self.worker_error
        line = f"{type(exc).__name__}: {one_line(exc)}" if str(exc).strip() else type(exc).__name__
        self.errors.append(line)
        again = restart and not self._closed and self._background and self._restarts < MAX_WORKER_RESTARTS
        message = (
            f"the MLflow thread of run {self.run_id} stopped ({line}); its metrics were kept"
            + (f" in {self.spool.path}" if self.spool.pending else "")
            + ("; it was started again" if again else "; metrics are sent from the training thread from now on")
        )
        warnings.warn(message, TrackingThreadWarning, stacklevel=3)
        self._emit("thread_died", message, log=False)
        if again:
            self._restarts += 1
            self._start_worker()
        else:
            self._worker = None

    def _report_refused(self) -> None:
        if self.refused > self._refused_reported:
            new = self.refused - self._refused_reported
            self._refused_reported = self.refused
            warnings.warn(
                f"{new} metrics were refused by MLflow run {self.run_id} ({self.errors[-1] if self.errors else 'no reason'}); "
                "they cannot be stored: check their keys and values",
                MetricsNotSentWarning,
                stacklevel=3,
            )

    def _emit(self, kind: str, message: str, *, log: bool = True) -> None:
        if self.on_event is not None:
            try:
                self.on_event(TrackingEvent(kind, message))
            except Exception as exc:  # noqa: BLE001 - a display failing must not stop the metrics
                _log.debug("tracking event callback failed: %s", one_line(exc))
        elif log:
            _log.warning(message)
