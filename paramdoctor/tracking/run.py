"""One MLflow run, opened and closed the way a training job needs.

``start_run`` talks to MLflow only through ``MlflowClient`` bound to one
tracking URI, never through the fluent ``mlflow.start_run`` global: a user's
own active run is left alone, and nothing global leaks between runs or tests.
Nothing here assumes a local file store; the URI may be an HTTP server. A
local SQLite store is created whole, or repaired, before the client is made
(:func:`paramdoctor.tracking.store.prepare_store`).

The run always ends with a status that says how it ended: FINISHED, FAILED
(with tag ``paramdoctor.failure`` = the one-line reason) or KILLED (Ctrl-C).
Buffered metrics are flushed before the status is set, so a failed run keeps
every number logged up to the failure. Closing cannot be cut short: while the
last metrics, the reason and the status are written, Ctrl-C and SIGTERM are
held back and raised afterwards (:mod:`paramdoctor.tracking.uninterruptible`).

Nothing a run logs is lost when its tracking server goes away: every write of
:class:`RunHandle` after the run exists (metrics, tags, params, texts,
artifacts, the final status) goes to a local spool while the server is
unreachable and is delivered, in order, when it is back
(:mod:`paramdoctor.tracking.sink`, :mod:`paramdoctor.tracking.spool`).
Training goes on; a run that ends while the server is still away ends
normally, with its spool on disk (``handle.spooled``, ``handle.spool_path``)
for ``paramdoctor sync``. ``on_tracking_event`` receives the few lines the
user should see (server gone, server back, run left spooled).

The experiment: created when missing, with MLflow's experiment tag
``mlflow.experimentKind`` = ``custom_model_development`` (what the MLflow 3
UI writes when a user picks "Machine learning" as an experiment's kind), and
an existing experiment that has no kind yet gets the same tag; a kind already
set (a user's choice, ``genai_development``) is never overwritten.

Liveness: the run carries ``paramdoctor.heartbeat`` (unix seconds) and
``paramdoctor.heartbeat_every_s`` from the start, and the sink renews the
heartbeat at least every ``heartbeat_every_s`` seconds; a RUNNING run with a
stale heartbeat lost its process (:func:`paramdoctor.liveness.is_interrupted`).

Resuming (``resume_run_id``): the run must exist, not be deleted, and belong
to ``experiment``. Its spool, if a crash left one, is delivered first. Its
status goes back to RUNNING and tag ``paramdoctor.resumes`` counts the
resumes; a stale ``paramdoctor.failure`` is removed. Params already in the
run are not logged again; one whose value differs is an :class:`InputError`
(MLflow keeps one value per param), missing ones are logged. For every metric
key the run holds, the highest stored step is a high-water mark: later
records of that key at or below it are dropped by the sink, so replaying a
partial epoch logs no step twice. Summary metrics logged with
:meth:`RunHandle.log_metrics` are exempt (they are meant to be overwritten).
``handle.resumed`` says which kind of run this is; ``handle.flush()`` returns
once everything logged so far is stored or spooled (call it before writing a
checkpoint, so a checkpoint never runs ahead of the run).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.liveness import TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY
from paramdoctor.tracking.sink import MlflowSink, TrackingEvent
from paramdoctor.tracking.spool import Spool, deliver, is_permanent, resolve_spool_dir
from paramdoctor.tracking.store import prepare_store
from paramdoctor.tracking.uninterruptible import deferred_signals
from paramdoctor.tracking.values import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    one_line,
    param_value,
    truncate,
)

MAX_PARAMS_TAGS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
DEFAULT_EXPERIMENT = "paramdoctor"
TAG_RESUMES = keys.TAG_RESUMES
# MLflow's experiment kind, as its UI writes it (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"

__all__ = [
    "DEFAULT_EXPERIMENT",
    "MODEL_TRAINING_KIND",
    "RunHandle",
    "TAG_HEARTBEAT",
    "TAG_HEARTBEAT_EVERY",
    "TAG_EXPERIMENT_KIND",
    "TAG_RESUMES",
    "TrackingEvent",
    "get_or_create_experiment",
    "mark_model_training",
    "resolve_tracking_uri",
    "start_run",
]

_log = logging.getLogger(__name__)

# leaving the run through these means someone stopped it, not that it failed
_STOPPED = (KeyboardInterrupt, SystemExit, GeneratorExit)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default (``sqlite:///mlflow.db``)."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing; either way marked as a model-training experiment."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING_KIND})
        except mlflow.exceptions.MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by another process
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise InputError(
            f"MLflow experiment {name!r} is deleted: restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or choose another experiment.name"
        )
    mark_model_training(client, experiment)
    return experiment.experiment_id


def mark_model_training(client: MlflowClient, experiment: Any) -> bool:
    """Tag ``experiment`` (an MLflow ``Experiment``) as model training unless it has a kind; True when tagged now.

    A kind someone set is theirs: it is left as it is. A store that refuses the
    write (a user with read-only rights on the experiment) costs the tag, not the run.
    """
    if (experiment.tags or {}).get(TAG_EXPERIMENT_KIND):
        return False
    try:
        client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING_KIND)
    except mlflow.exceptions.MlflowException as exc:
        _log.debug("experiment %s left without a kind: %s", experiment.experiment_id, one_line(exc))
        return False
    return True


def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): truncate(str(v), MAX_TAG_VALUE_LENGTH) for k, v in tags.items()}


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): truncate(param_value(v), MAX_PARAM_VALUE_LENGTH) for k, v in params.items()}


@dataclass
class RunHandle:
    """An open MLflow run: its ids, its metric sink, and the few writes a job needs.

    Every write is stored at once, or spooled while the tracking server is
    away (see the module docstring); none raises because the server is down.
    """

    client: MlflowClient
    run_id: str
    experiment_id: str
    experiment: str
    run_name: str
    tracking_uri: str
    sink: MlflowSink
    resumed: bool = False

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags now (not buffered); values longer than MLflow allows are cut with a marker."""
        if tags:
            self.sink.write({"op": "tags", "tags": _tag_values(tags)})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100; None reads ``null``, long values are cut with a marker."""
        if params:
            self.sink.write({"op": "params", "params": _param_values(params)})

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Summary metrics, through the same buffer as the curves (kept even at a step a resumed run holds)."""
        self.sink.log_metrics(metrics, step, guard=False)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file or folder; while the server is away a copy is spooled (the original may go)."""
        local = os.fspath(local_path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"artifact {local} does not exist")
        self.sink.write({"op": "artifact", "local_path": local, "artifact_path": artifact_path})

    def log_text(self, text: str, artifact_file: str) -> None:
        self.sink.write({"op": "text", "text": text, "artifact_file": artifact_file})

    def flush(self) -> None:
        """Return once every metric logged so far is stored or spooled (call it before a checkpoint)."""
        self.sink.flush()

    @property
    def spooled(self) -> int:
        """Metric points on local disk because the tracking server was away (0 when all are stored)."""
        return self.sink.spooled

    @property
    def spool_path(self) -> str | None:
        """The spool file while it holds writes not yet stored (``paramdoctor sync`` sends them)."""
        return str(self.sink.spool.path) if self.sink.spool.pending else None


@contextmanager
def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    artifacts_text: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    flush_every_s: float = 5.0,
    *,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    background: bool = True,
    resume_run_id: str | None = None,
    heartbeat_every_s: float = 30.0,
    spool_dir: str | os.PathLike[str] | None = None,
    on_tracking_event: Callable[[TrackingEvent], None] | None = None,
) -> Iterator[RunHandle]:
    """Open (or, with ``resume_run_id``, reopen) an MLflow run, yield a :class:`RunHandle`, end it with the right status.

    ``params`` is a flat dict (see :func:`flatten_params`); ``artifacts_text`` maps
    artifact file names to small texts (the config) logged at the start.
    ``spool_dir``: where writes wait while the server is away (default
    ``$PARAMDOCTOR_SPOOL_DIR`` or ``.paramdoctor/spool``).
    """
    for name, value in (("flush_every_s", flush_every_s), ("heartbeat_every_s", heartbeat_every_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    uri = resolve_tracking_uri(tracking_uri or (getattr(client, "tracking_uri", None) if client is not None else None))
    spool_root = resolve_spool_dir(spool_dir)
    beat = {TAG_HEARTBEAT: str(int(time.time())), TAG_HEARTBEAT_EVERY: f"{heartbeat_every_s:g}"}
    run_tags = dict(tags or {})
    if parent_run_id:
        run_tags[keys.TAG_PARENT_RUN] = parent_run_id
    high_water: dict[str, int] = {}
    params_to_log = dict(params or {})
    try:
        try:
            prepare_store(uri)
        except InputError as exc:
            raise InputError(f"cannot open an MLflow run in experiment {experiment!r} at {uri}: {exc}") from exc
        client = client or MlflowClient(tracking_uri=uri)
        experiment_id = get_or_create_experiment(client, experiment)
        if resume_run_id:
            run, params_to_log, high_water = _reopen(
                client, resume_run_id, experiment, experiment_id, params_to_log, {**run_tags, **beat}, spool_root, uri
            )
        else:
            run = client.create_run(experiment_id, run_name=run_name, tags=_tag_values({**run_tags, **beat}))
    except InputError:
        raise
    except Exception as exc:  # unreachable server, unwritable database, bad URI
        raise InputError(
            f"cannot open an MLflow run in experiment {experiment!r} at {uri}: {one_line(exc, 300)} "
            "(check MLFLOW_TRACKING_URI)"
        ) from exc

    run_id = run.info.run_id
    sink = MlflowSink(
        client,
        run_id,
        flush_every_s=flush_every_s,
        background=background,
        heartbeat_every_s=heartbeat_every_s,
        spool=Spool(spool_root, run_id, tracking_uri=uri),
        on_event=on_tracking_event,
        high_water=high_water,
    )
    handle = RunHandle(
        client=client,
        run_id=run_id,
        experiment_id=experiment_id,
        experiment=experiment,
        run_name=run.info.run_name,
        tracking_uri=uri,
        sink=sink,
        resumed=bool(resume_run_id),
    )
    status, failure = RunStatus.to_string(RunStatus.FINISHED), None
    try:
        if params_to_log:
            handle.log_params(params_to_log)
        for artifact_file, text in (artifacts_text or {}).items():
            handle.log_text(text, artifact_file)
        yield handle
    except _STOPPED:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except BaseException as exc:
        status, failure = RunStatus.to_string(RunStatus.FAILED), one_line(exc)
        raise
    finally:
        _end_run(handle, status, failure, exception_in_flight=status != "FINISHED")


def _reopen(
    client: MlflowClient,
    run_id: str,
    experiment: str,
    experiment_id: str,
    params: dict[str, Any],
    tags: dict[str, Any],
    spool_root: Path,
    uri: str,
):
    """Check that run ``run_id`` can be carried on, deliver its spool, set it RUNNING again.

    Returns the run, the params it does not hold yet, and the high-water step of every metric key.
    """
    where = f"cannot resume run {run_id}"
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        if is_permanent(exc):
            raise InputError(f"{where}: no such run at {uri} (check the run id and MLFLOW_TRACKING_URI)") from exc
        raise
    if run.info.lifecycle_stage == "deleted":
        raise InputError(f"{where}: it is deleted at {uri}; restore it (mlflow runs restore --run-id {run_id}) first")
    if run.info.experiment_id != experiment_id:
        raise InputError(
            f"{where}: it belongs to experiment id {run.info.experiment_id}, not to {experiment!r} (id {experiment_id}); "
            "resume it in its own experiment"
        )
    spool = Spool(spool_root, run_id, tracking_uri=uri)
    if spool.path.exists():
        if not spool.acquire(blocking=False):
            raise InputError(f"{where}: another process is writing it (its spool {spool.path} is locked); stop that process first")
        try:
            result = deliver(spool, client)
        finally:
            spool.release()
        if result.remaining:
            raise InputError(
                f"{where}: {result.remaining} writes kept in {spool.path} could not be sent ({result.error}); "
                f"run `paramdoctor sync {run_id}` once the tracking server takes them"
            )
        run = client.get_run(run_id)
    wanted = _param_values(params)
    held = run.data.params
    for key, value in wanted.items():
        if key in held and held[key] != value:
            raise InputError(
                f"{where}: param {key} is {held[key]!r} in the run but {value!r} now (MLflow keeps one value per param); "
                "resume with the config the run started with, or start a new run"
            )
    missing = {k: v for k, v in wanted.items() if k not in held}
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    resumes = _int(run.data.tags.get(TAG_RESUMES)) + 1
    client.log_batch(run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in _tag_values({**tags, TAG_RESUMES: resumes}).items()])
    if keys.TAG_FAILURE in run.data.tags:
        client.delete_tag(run_id, keys.TAG_FAILURE)  # the failure of an earlier attempt no longer describes the run
    return run, missing, _high_water(client, run)


def _high_water(client: MlflowClient, run) -> dict[str, int]:
    """The highest step stored for every metric key of ``run``.

    MLflow's SQL stores (and servers on them) keep, per key, the metric with
    the highest (step, timestamp) as the run's latest: one ``get_run`` gives
    every key's highest step. Without those (another store), the full
    histories are read.
    """
    latest = getattr(run.data, "_metric_objs", None)
    if latest is not None and {m.key for m in latest} == set(run.data.metrics):
        marks: dict[str, int] = {}
        for metric in latest:
            marks[metric.key] = max(marks.get(metric.key, metric.step), metric.step)
        return marks
    return {key: max(m.step for m in client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics}


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


def _end_run(handle: RunHandle, status: str, failure: str | None, *, exception_in_flight: bool) -> None:
    """Flush the metrics, then write the failure reason and the status; Ctrl-C waits until they are written.

    While the server is away these writes are spooled, not lost, and nothing
    raises. While another exception is on its way out, a failure here is
    logged, not raised, so the caller sees the error that ended the run.
    """
    end_time = int(time.time() * 1000)
    steps: list[Callable[[], Any]] = [handle.sink.flush]
    if failure is not None:
        steps.append(lambda: handle.set_tags({keys.TAG_FAILURE: failure}))
    steps.append(lambda: handle.sink.write({"op": "terminate", "status": status, "end_time": end_time}))
    steps.append(handle.sink.close)
    errors: list[Exception] = []
    with deferred_signals(notice=f"paramdoctor: writing the status of MLflow run {handle.run_id} before stopping (Ctrl-C twice more to abandon it)"):
        for step in steps:  # each is tried even when an earlier one failed: the status matters most
            try:
                step()
            except Exception as exc:
                errors.append(exc)
        for exc in errors if exception_in_flight else errors[1:]:
            _log.warning("while closing MLflow run %s as %s: %s", handle.run_id, status, one_line(exc))
    if errors and not exception_in_flight:
        raise errors[0]
