"""A run's writes kept on local disk while its tracking server is away.

When a send to MLflow fails for a reason that may pass (the server is down,
a timeout, a 5xx answer) even after the sink's retry, the write is appended
to the run's spool instead of being lost, and training goes on. The spool
holds *operations*, in the order they were made: metric batches, tags,
params, texts, artifacts (the local file is copied into the spool directory
first) and the terminal status (``set_terminated`` with its end time).
Everything :class:`~paramdoctor.tracking.run.RunHandle` writes after the run
exists can be spooled.

Layout, under the spool directory (``.paramdoctor/spool`` in the working
directory, or ``$PARAMDOCTOR_SPOOL_DIR``, or the ``spool_dir`` argument)::

    <run_id>.jsonl     header line, then one JSON line per operation, and a
                       {"done": seq} line after each one the server stored
    <run_id>.files/    copies of spooled artifacts, one folder per operation
    <run_id>.lock      held (flock) by the one process that writes or sends it

The file is append-only and every line is fsync'ed before the write counts
as kept, so a crash loses at most a line being written (a torn last line is
cut off on the next open). :func:`deliver` sends the operations in order and
marks each one done only after the server stored it; the file and its copies
are deleted once every operation is done. A crash between a send and its
``done`` line sends that one operation again: MLflow's SQL stores (SQLite,
PostgreSQL, and a tracking server in front of them) keep a metric once per
(key, value, timestamp, step) and ignore an identical one, spooled metrics
keep their original timestamps, and tags, params, texts, artifacts and the
status overwrite themselves with the same value. So nothing is stored twice.
(MLflow's deprecated file store, ``mlruns/``, would store such a metric
twice.)

Bound: the pending operations of one run may take ``max_bytes`` (default
256 MiB, about four million metric points). Beyond that the oldest per-step
points (keys ``step/...`` and ``telemetry/...``) are dropped, the file is
rewritten without them, and the drop is reported (``dropped``, and the
``on_drop`` callback). Epoch metrics, summary metrics, tags, params,
artifacts and the status are never dropped, even when they alone pass the
bound. Artifact copies do not count towards it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramdoctor.durable import fsync_directory, fsync_path
from paramdoctor.errors import InputError
from paramdoctor.tracking.values import one_line

try:  # POSIX; elsewhere one process per spool is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ENV_SPOOL_DIR = "PARAMDOCTOR_SPOOL_DIR"
DEFAULT_SPOOL_DIR = os.path.join(".paramdoctor", "spool")
DEFAULT_MAX_BYTES = 256 * 2**20
DROPPABLE_PREFIXES = ("step/", "telemetry/")  # per-step series: the first to go when the spool is full
FORMAT = 1
MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
MAX_PARAMS_TAGS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
_COMPACT_TO = 0.9  # after dropping, the pending operations take at most this share of max_bytes

Record = tuple[str, float, int, int]  # key, value, timestamp_ms, step


def resolve_spool_dir(spool_dir: str | os.PathLike[str] | None = None) -> Path:
    """The explicit directory, else ``$PARAMDOCTOR_SPOOL_DIR``, else ``.paramdoctor/spool``; made absolute."""
    chosen = spool_dir or os.environ.get(ENV_SPOOL_DIR) or DEFAULT_SPOOL_DIR
    return Path(chosen).expanduser().absolute()


class SpoolCorrupt(InputError):
    """A spool file that cannot be read (not written by this module, or damaged in its middle)."""


def is_permanent(exc: BaseException) -> bool:
    """True when MLflow refused the write itself (4xx: bad value, no such run), not the connection.

    Such a write will never be stored, however often it is sent; everything
    else (connection refused, timeouts, 5xx, 429 rate limits, a locked
    database) may pass and is worth keeping.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    try:
        status = int(exc.get_http_status_code())
    except (TypeError, ValueError):
        return False
    return 400 <= status < 500 and status not in (408, 429)


@dataclass
class _Entry:
    seq: int
    offset: int
    length: int
    points: int


class Spool:
    """The spool of one run. Thread-safe; one process at a time (``acquire``)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        run_id: str,
        *,
        tracking_uri: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_drop: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.directory = Path(directory)
        self.run_id = run_id
        self.path = self.directory / f"{run_id}.jsonl"
        self.files_dir = self.directory / f"{run_id}.files"
        self.lock_path = self.directory / f"{run_id}.lock"
        self.tracking_uri = tracking_uri  # from the header when an existing file is read
        self.max_bytes = int(max_bytes)
        self.on_drop = on_drop  # (dropped now, dropped in all) after the bound dropped step points
        self.dropped = 0  # step points dropped to keep the bound
        self.over_bound = False  # True when what may not be dropped alone passes the bound
        self._lock = threading.RLock()
        self._entries: deque[_Entry] = deque()
        self._next_seq = 1
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._file_size = 0
        self._floor = 0  # pending bytes that could not be dropped at the last compaction

    # -- ownership ---------------------------------------------------------------------

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the run's spool for this process and read what is already in it. False when busy (non-blocking)."""
        with self._lock:
            if self._lock_fd is not None:
                return True
            self.directory.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                    except BlockingIOError:
                        os.close(fd)
                        return False
                try:  # the lock file may have been removed by the owner that just let go: take the new one
                    same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            self._lock_fd = fd
            try:
                self._load()
            except BaseException:
                self.release()
                raise
            return True

    def release(self) -> None:
        """Let go of the spool (the file stays when operations are pending)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                if not self._entries and not self.path.exists():  # nothing left: no lock file either
                    with contextlib.suppress(FileNotFoundError):
                        self.lock_path.unlink()  # a process waiting on it sees the change and takes a new one
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- what it holds ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Operations not yet stored."""
        with self._lock:
            return len(self._entries)

    @property
    def points(self) -> int:
        """Metric points not yet stored."""
        with self._lock:
            return sum(e.points for e in self._entries)

    def operations(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The pending operations, oldest first: (seq, operation)."""
        with self._lock:
            entries = list(self._entries)
            return iter([(e.seq, self._read(e)) for e in entries])

    def records(self) -> list[Record]:
        """Every pending metric point, oldest first."""
        return [tuple(r) for _, op in self.operations() if op["op"] == "metrics" for r in op["metrics"]]  # type: ignore[misc]

    def peek(self) -> tuple[int, dict[str, Any]] | None:
        """The oldest pending operation."""
        with self._lock:
            if not self._entries:
                return None
            entry = self._entries[0]
            return entry.seq, self._read(entry)

    # -- writing ---------------------------------------------------------------------

    def append(self, op: dict[str, Any]) -> int:
        """Keep ``op`` (a JSON-able dict with key ``op``); returns its sequence number once it is on disk."""
        with self._lock:
            self.acquire()
            seq = self._next_seq
            self._write_op(seq, op)
            return seq

    def append_metrics(self, records: Iterable[Record]) -> int:
        metrics = [[str(k), float(v), int(ts), int(step)] for k, v, ts, step in records]
        return self.append({"op": "metrics", "metrics": metrics}) if metrics else 0

    def append_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None) -> int:
        """Copy the file (or folder) into the spool, then keep the operation that uploads the copy."""
        source = Path(local_path)
        with self._lock:
            self.acquire()
            seq = self._next_seq
            target = self.files_dir / str(seq) / source.name
            shutil.rmtree(target.parent, ignore_errors=True)
            target.parent.mkdir(parents=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copyfile(source, target)
                fsync_path(target)
            self._write_op(seq, {"op": "artifact", "file": f"{seq}/{source.name}", "artifact_path": artifact_path})
            return seq

    def mark_done(self, seq: int) -> None:
        """Operation ``seq`` is stored: say so on disk; delete everything once nothing is pending."""
        with self._lock:
            self.acquire()
            self._append_line({"done": seq})
            self._entries = deque(e for e in self._entries if e.seq != seq)
            shutil.rmtree(self.files_dir / str(seq), ignore_errors=True)
            if not self._entries:
                self._remove()

    # -- the file ----------------------------------------------------------------------

    def _write_op(self, seq: int, op: dict[str, Any]) -> None:
        line = _encode({"seq": seq, **op})
        # when what may not be dropped alone fills the bound, compact again only after 10% more
        if self._pending_bytes() + len(line) > max(self.max_bytes, self._floor + self.max_bytes // 10):
            self._make_room(len(line))
        elif self._file_size + len(line) > self.max_bytes:
            self._rewrite(list(self._entries_with_ops()))  # delivered lines and done marks: shed them
        offset = self._append_raw(line)
        self._entries.append(_Entry(seq, offset, len(line), _points(op)))
        self._next_seq = seq + 1

    def _append_line(self, obj: dict[str, Any]) -> int:
        return self._append_raw(_encode(obj))

    def _append_raw(self, line: bytes) -> int:
        if self._fd is None:
            self._open_for_append()
        offset = self._file_size
        _write_all(self._fd, line)
        os.fsync(self._fd)
        self._file_size += len(line)
        return offset

    def _open_for_append(self) -> None:
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            self._file_size = 0
            header = {"paramdoctor_spool": FORMAT, "run_id": self.run_id, "tracking_uri": self.tracking_uri,
                      "created": time.time()}
            self._append_raw(_encode(header))
            fsync_directory(self.directory)
        else:
            self._file_size = os.fstat(self._fd).st_size

    def _read(self, entry: _Entry) -> dict[str, Any]:
        if self._fd is None:
            self._open_for_append()
        data = os.pread(self._fd, entry.length, entry.offset)
        return json.loads(data)

    def _pending_bytes(self) -> int:
        return sum(e.length for e in self._entries)

    def _entries_with_ops(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for entry in list(self._entries):
            yield entry.seq, self._read(entry)

    def _load(self) -> None:
        """Read an existing file: its header, pending operations and done marks; cut a torn last line."""
        self._entries.clear()
        self._next_seq = 1
        self._file_size = 0
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        done: set[int] = set()
        entries: list[_Entry] = []
        offset = 0
        lines = data.split(b"\n")
        complete = len(lines) - 1  # the part after the last newline is torn (or empty)
        for number, raw in enumerate(lines[:complete], start=1):
            length = len(raw) + 1
            try:
                obj = json.loads(raw)
            except ValueError:
                raise SpoolCorrupt(
                    f"spool {self.path} line {number} is not JSON: move the file away (its operations were not sent)"
                ) from None
            if number == 1:
                if not isinstance(obj, dict) or obj.get("paramdoctor_spool") != FORMAT:
                    raise SpoolCorrupt(f"{self.path} is not a paramdoctor spool (format {FORMAT}): move it out of the spool directory")
                self.tracking_uri = self.tracking_uri or obj.get("tracking_uri")
            elif "done" in obj:
                done.add(int(obj["done"]))
            else:
                seq = int(obj["seq"])
                entries.append(_Entry(seq, offset, length, _points(obj)))
                self._next_seq = max(self._next_seq, seq + 1)
            offset += length
        self._next_seq = max([self._next_seq, *(s + 1 for s in done)])
        if offset < len(data):  # a line cut short by a crash: it was never reported as kept
            with open(self.path, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        self._file_size = offset
        self._entries.extend(e for e in entries if e.seq not in done)
        if complete == 0 or not self._entries:
            self._remove()

    def _make_room(self, incoming: int) -> None:
        """Drop the oldest per-step points until the pending operations fit the bound again."""
        target = int(self.max_bytes * _COMPACT_TO) - incoming
        kept: list[tuple[int, dict[str, Any]]] = list(self._entries_with_ops())
        size = sum(len(_encode({"seq": seq, **op})) for seq, op in kept)
        dropped_now = 0
        for i, (seq, op) in enumerate(kept):
            if size <= target:
                break
            if op["op"] != "metrics":
                continue
            before = len(_encode({"seq": seq, **op}))
            keep = [r for r in op["metrics"] if not str(r[0]).startswith(DROPPABLE_PREFIXES)]
            if len(keep) == len(op["metrics"]):
                continue
            dropped_now += len(op["metrics"]) - len(keep)
            op = {**op, "metrics": keep}
            kept[i] = (seq, op)
            size += len(_encode({"seq": seq, **op})) - before
        self.over_bound = size > target
        kept = [(seq, op) for seq, op in kept if op["op"] != "metrics" or op["metrics"]]
        self._rewrite(kept)
        self._floor = self._pending_bytes()
        if dropped_now:
            self.dropped += dropped_now
            if self.on_drop is not None:
                self.on_drop(dropped_now, self.dropped)

    def _rewrite(self, kept: list[tuple[int, dict[str, Any]]]) -> None:
        """Replace the file by its header and ``kept`` (atomically: a crash leaves the old or the new one)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        header = {"paramdoctor_spool": FORMAT, "run_id": self.run_id, "tracking_uri": self.tracking_uri,
                  "created": time.time()}
        entries: list[_Entry] = []
        with open(tmp, "wb") as fh:
            offset = fh.write(_encode(header))
            for seq, op in kept:
                line = _encode({"seq": seq, **op})
                fh.write(line)
                entries.append(_Entry(seq, offset, len(line), _points(op)))
                offset += len(line)
            fh.flush()
            os.fsync(fh.fileno())
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.replace(tmp, self.path)
        fsync_directory(self.directory)
        self._entries = deque(entries)
        self._open_for_append()

    def _remove(self) -> None:
        """Nothing pending: the file and the artifact copies go (the lock file goes at ``release``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        shutil.rmtree(self.files_dir, ignore_errors=True)
        self._file_size = 0
        self._floor = 0


def spooled_runs(directory: str | os.PathLike[str]) -> list[str]:
    """Run ids with a spool file in ``directory``, oldest file first."""
    root = Path(directory)
    if not root.is_dir():
        return []
    files = sorted(root.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    return [p.stem for p in files]


# --- sending ----------------------------------------------------------------------------


@dataclass
class Delivery:
    """What one :func:`deliver` call stored, and why it stopped early (if it did)."""

    operations: int = 0  # operations done (stored, or refused for good)
    points: int = 0  # metric points stored
    remaining: int = 0  # operations still pending
    error: str | None = None  # one line: why the first pending one was not stored
    refused: bool = False  # the server refuses the run itself (gone, deleted): sending again will not help
    rejected: list[str] = field(default_factory=list)  # writes the server refused for good, one line each
    rejected_points: int = 0


def deliver(spool: Spool, client, *, should_stop: Callable[[], bool] | None = None) -> Delivery:
    """Send the pending operations in order, each marked done once stored; stop at the first failure.

    A write that MLflow refuses for good (a bad metric name, a bad value)
    while the run itself is fine is not kept: it would block everything
    behind it, the final status included. The metrics of a refused batch
    that MLflow takes are stored (the batch is split until the bad ones are
    alone), and every refusal is reported in ``rejected``. When the run
    itself is refused (no such run at that server, deleted), nothing is
    dropped: delivery stops with ``refused`` set.
    """
    result = Delivery()
    while not (should_stop and should_stop()):
        item = spool.peek()
        if item is None:
            break
        seq, op = item
        try:
            if op["op"] == "metrics":
                stored, refused, reason = store_metrics(client, spool.run_id, [tuple(r) for r in op["metrics"]])
                if refused:
                    result.rejected.append(f"{len(refused)} metrics ({reason})")
                    result.rejected_points += len(refused)
            else:
                stored = 0
                send_op(client, spool.run_id, op, spool.files_dir)
        except Exception as exc:  # the server is still away, or refuses this operation
            problem = run_problem(client, spool.run_id) if is_permanent(exc) else None
            if not is_permanent(exc) or problem:
                result.error = problem or one_line(exc, 300)
                result.refused = problem is not None
                break
            result.rejected.append(f"{describe(op)} ({one_line(exc, 300)})")
            stored = 0
        spool.mark_done(seq)
        result.operations += 1
        result.points += stored
    result.remaining = spool.pending
    return result


def store_metrics(client, run_id: str, records: list[Record]) -> tuple[int, list[Record], str | None]:
    """Log ``records`` in batches of 1000; a batch MLflow refuses is split until its bad metrics are alone.

    Returns (points stored, records refused for good, the last refusal's
    reason). A failure that may pass (server away) is raised: the caller
    keeps the records.
    """
    from mlflow.entities import Metric

    stored = 0
    refused: list[Record] = []
    reason: str | None = None
    pending = list(_chunks(records, MAX_METRICS_PER_BATCH))
    while pending:
        chunk = pending.pop(0)
        try:
            client.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in chunk])
        except Exception as exc:
            if not is_permanent(exc) or run_problem(client, run_id):
                raise
            reason = one_line(exc, 300)
            if len(chunk) == 1:
                refused.extend(chunk)
            else:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
            continue
        stored += len(chunk)
    return stored, refused, reason


def run_problem(client, run_id: str) -> str | None:
    """Why the run cannot take writes at all (missing, deleted), or None when it can."""
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the run is not there to write to
        return f"run {run_id} cannot be read at {getattr(client, 'tracking_uri', '?')}: {one_line(exc, 200)}"
    if run.info.lifecycle_stage != "active":
        return f"run {run_id} is {run.info.lifecycle_stage} at {getattr(client, 'tracking_uri', '?')}: restore it first"
    return None


def send_op(client, run_id: str, op: dict[str, Any], files_dir: Path | None = None) -> None:
    """Perform one operation on the run through ``client`` (an ``MlflowClient``); raises what MLflow raises."""
    from mlflow.entities import Metric, Param, RunTag

    kind = op["op"]
    if kind == "metrics":
        records = op["metrics"]
        for chunk in _chunks(records, MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in chunk])
    elif kind == "tags":
        for chunk in _chunks(list(op["tags"].items()), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in chunk])
    elif kind == "params":
        for chunk in _chunks(list(op["params"].items()), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])
    elif kind == "text":
        client.log_text(run_id, op["text"], op["artifact_file"])
    elif kind == "artifact":
        local = op["local_path"] if "local_path" in op else str(Path(files_dir or ".") / op["file"])
        client.log_artifact(run_id, local, op.get("artifact_path"))
    elif kind == "terminate":
        set_terminated(client, run_id, op["status"], op.get("end_time"))
    else:
        raise SpoolCorrupt(f"unknown spooled operation {kind!r} for run {run_id}")


ENV_NO_RUN_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_NO_RUN_LINKS_LOCK = threading.Lock()


def set_terminated(client, run_id: str, status: str, end_time: int | None = None) -> None:
    """``client.set_terminated`` without the two lines MLflow writes to stdout for a run on a tracking server.

    On an HTTP tracking URI MLflow's ``set_terminated`` fetches the whole run
    again and prints ``🏃 View run NAME at: URL`` and ``🧪 View experiment at:
    URL`` to stdout, for every run: on a team's server they landed in the
    middle of ``tune --json`` and ``treat --json`` (a pair per trial or child
    run). MLflow's own switch, ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``, is
    set for the call (unless the user set it), so the status still goes
    through ``client`` (a wrapping client sees the call) and costs one
    request instead of two.
    """
    with _NO_RUN_LINKS_LOCK:
        ours = ENV_NO_RUN_LINKS not in os.environ
        if ours:
            os.environ[ENV_NO_RUN_LINKS] = "true"
        try:
            client.set_terminated(run_id, status, end_time)
        finally:
            if ours:
                os.environ.pop(ENV_NO_RUN_LINKS, None)


def describe(op: dict[str, Any]) -> str:
    """A few words for one operation (sync's report)."""
    kind = op["op"]
    if kind == "metrics":
        return f"{len(op['metrics'])} metrics"
    if kind == "tags":
        return f"tags {', '.join(sorted(op['tags']))}"
    if kind == "params":
        return f"{len(op['params'])} params"
    if kind == "text":
        return f"artifact {op['artifact_file']}"
    if kind == "artifact":
        return f"artifact {op['file'].split('/', 1)[-1]}"
    if kind == "terminate":
        return f"status {op['status']}"
    return kind


# --- helpers ---------------------------------------------------------------------------


def _points(op: dict[str, Any]) -> int:
    return len(op["metrics"]) if op.get("op") == "metrics" else 0


def _encode(obj: dict[str, Any]) -> bytes:
    # NaN and inf stay what they are (Python's JSON reads its own NaN/Infinity back)
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
