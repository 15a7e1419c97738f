"""One MLflow run, opened and closed the way a training job needs.

``start_run`` talks to MLflow only through ``MlflowClient`` bound to one
tracking URI, never through the fluent ``mlflow.start_run`` global: a user's
own active run is left alone, and nothing global leaks between runs or tests.
Nothing here assumes a local file store; the URI may be an HTTP server.

The run always ends with a status that says how it ended: FINISHED, FAILED
(with tag ``paramdoctor.failure`` = the one-line reason) or KILLED (Ctrl-C).
Buffered metrics are flushed before the status is set, so a failed run keeps
every number logged up to the failure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.tracking.sink import MlflowSink
from paramdoctor.tracking.values import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    one_line,
    param_value,
    truncate,
)

MAX_PARAMS_TAGS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
DEFAULT_EXPERIMENT = "paramdoctor"

_log = logging.getLogger(__name__)

# leaving the run through these means someone stopped it, not that it failed
_STOPPED = (KeyboardInterrupt, SystemExit, GeneratorExit)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default (``sqlite:///mlflow.db``)."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except mlflow.exceptions.MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by another process
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise InputError(
            f"MLflow experiment {name!r} is deleted: restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or choose another experiment.name"
        )
    return experiment.experiment_id


def _tag_batch(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(str(k), truncate(str(v), MAX_TAG_VALUE_LENGTH)) for k, v in tags.items()]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class RunHandle:
    """An open MLflow run: its ids, its metric sink, and the few writes a job needs."""

    client: MlflowClient
    run_id: str
    experiment_id: str
    experiment: str
    run_name: str
    tracking_uri: str
    sink: MlflowSink

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags now (not buffered); values longer than MLflow allows are cut with a marker."""
        for chunk in _chunks(_tag_batch(tags), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100; None reads ``null``, long values are cut with a marker."""
        batch = [Param(str(k), truncate(param_value(v), MAX_PARAM_VALUE_LENGTH)) for k, v in params.items()]
        for chunk in _chunks(batch, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Summary metrics, through the same buffer as the curves."""
        self.sink.log_metrics(metrics, step)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, os.fspath(local_path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)


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
) -> Iterator[RunHandle]:
    """Open an MLflow run, yield a :class:`RunHandle`, and end it with the right status.

    ``params`` is a flat dict (see :func:`flatten_params`); ``artifacts_text`` maps
    artifact file names to small texts (the config) logged at the start.
    """
    uri = resolve_tracking_uri(tracking_uri)
    try:
        client = client or MlflowClient(tracking_uri=uri)
        experiment_id = get_or_create_experiment(client, experiment)
        run_tags = dict(tags or {})
        if parent_run_id:
            run_tags[keys.TAG_PARENT_RUN] = parent_run_id
        run = client.create_run(experiment_id, run_name=run_name, tags={t.key: t.value for t in _tag_batch(run_tags)})
    except InputError:
        raise
    except Exception as exc:  # unreachable server, unwritable database, bad URI
        raise InputError(
            f"cannot open an MLflow run in experiment {experiment!r} at {uri}: {one_line(exc, 300)} "
            "(check MLFLOW_TRACKING_URI)"
        ) from exc

    run_id = run.info.run_id
    handle = RunHandle(
        client=client,
        run_id=run_id,
        experiment_id=experiment_id,
        experiment=experiment,
        run_name=run.info.run_name,
        tracking_uri=uri,
        sink=MlflowSink(client, run_id, flush_every_s=flush_every_s, background=background),
    )
    status, failure = RunStatus.to_string(RunStatus.FINISHED), None
    try:
        if params:
            handle.log_params(params)
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


def _end_run(handle: RunHandle, status: str, failure: str | None, *, exception_in_flight: bool) -> None:
    """Flush the metrics, then write the failure reason and the status.

    While another exception is on its way out, a failure here is logged, not
    raised, so the caller sees the error that ended the run.
    """
    steps = [handle.sink.close]
    if failure is not None:
        steps.append(lambda: handle.set_tags({keys.TAG_FAILURE: failure}))
    steps.append(lambda: handle.client.set_terminated(handle.run_id, status))
    errors: list[Exception] = []
    for step in steps:  # each is tried even when an earlier one failed: the status matters most
        try:
            step()
        except Exception as exc:
            errors.append(exc)
    if errors and not exception_in_flight:
        raise errors[0]
    for exc in errors:
        _log.warning("while closing MLflow run %s as %s: %s", handle.run_id, status, one_line(exc))
