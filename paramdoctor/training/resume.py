"""``train --resume RUN``: continue an interrupted run in the same MLflow run.

The run must be one paramdoctor trained, ended by a signal, a crash or a
dead machine (KILLED, FAILED for a reason other than divergence, or RUNNING
with a stale heartbeat), and its ``last.pt`` must be where the run's tag
``paramdoctor.checkpoint_dir`` says. The config is the one in the
checkpoint: a resumed run is the same experiment carried on, so nothing can
be overridden (MLflow keeps one value per param).
"""

from __future__ import annotations

import time
from pathlib import Path

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.training.checkpoint import CheckpointDir
from paramdoctor.training.fit import STOP_EARLY, STOP_MAX_EPOCHS, STOP_NONFINITE, FitListener, FitResult, ResumePoint, fit

# how a run may have ended and still be carried on
_RESUMABLE = ("KILLED", "FAILED", "RUNNING")


class RunAlreadyComplete(Exception):
    """The run's training had ended (early stopping, max epochs) when its process was stopped, before it closed."""

    def __init__(self, run_id: str, status: str, stop_reason: str) -> None:
        super().__init__(run_id)
        self.run_id, self.status, self.stop_reason = run_id, status, stop_reason


def close_complete_run(done: RunAlreadyComplete) -> str:
    """Mark a run whose training had ended as FINISHED (after sending what it spooled); the line to print."""
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.run import resolve_tracking_uri
    from paramdoctor.tracking.spool import Spool, deliver, resolve_spool_dir

    uri = resolve_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    spool = Spool(resolve_spool_dir(None), done.run_id, tracking_uri=uri)
    try:
        if spool.path.exists() and spool.acquire(blocking=False):
            try:
                deliver(spool, client)  # what it logged last, in order, before the status
            finally:
                spool.release()
        client.set_terminated(done.run_id, "FINISHED")
    except Exception as exc:
        raise InputError(f"--resume {done.run_id}: cannot close the run at {client.tracking_uri} ({type(exc).__name__}); try again") from exc
    return (
        f"run {done.run_id} had finished training (stop reason {done.stop_reason}) when its process was stopped "
        f"while closing it ({done.status}): marked FINISHED, nothing to train"
    )


def resume_point(run_ref: str, *, experiment: str | None = None, now: float | None = None) -> tuple[ResumePoint, object]:
    """The checkpoint state and config of run ``run_ref`` (an id, a name, or ``latest``); InputError when it cannot go on."""
    from mlflow.tracking import MlflowClient

    from paramdoctor.config import TrainConfig
    from paramdoctor.data.lineage import SplitRecord
    from paramdoctor.liveness import is_interrupted
    from paramdoctor.tracking.run import resolve_tracking_uri

    from paramdoctor.tracking.store import prepare_store

    uri = resolve_tracking_uri()
    prepare_store(uri, create=False)
    client = MlflowClient(tracking_uri=uri)
    run = _find_run(client, run_ref, experiment, uri)
    run_id, status, tags = run.info.run_id, run.info.status, run.data.tags
    where = f"--resume {run_ref}"
    if tags.get(keys.TAG_SOURCE) != "paramdoctor" or keys.TAG_CHECKPOINT_DIR not in tags:
        raise InputError(f"{where}: run {run_id} was not trained by a paramdoctor that writes checkpoints; nothing to resume")
    stop_reason = tags.get(keys.TAG_STOP_REASON)
    if status == "FINISHED" or status not in _RESUMABLE:
        raise InputError(
            f"{where}: run {run_id} is {status} (stop reason {stop_reason or 'none'}): nothing to resume; "
            f"to train further start a new run from its weights: model.weights=runs:/{run_id}"
        )
    if stop_reason == STOP_NONFINITE:
        raise InputError(
            f"{where}: run {run_id} diverged (non-finite loss): resuming would diverge again; "
            f"run `paramdoctor diagnose {run_id}` and train the prescribed config"
        )
    if status == "RUNNING" and not is_interrupted(status, tags, time.time() if now is None else now):
        raise InputError(
            f"{where}: run {run_id} is still running (its trainer holds its lock or its heartbeat is recent); "
            "stop that process first"
        )
    if stop_reason in (STOP_EARLY, STOP_MAX_EPOCHS):
        # its training was complete (best weights, summary, stop reason logged) when the process was stopped
        # while closing the run: nothing to train, only the status to set
        raise RunAlreadyComplete(run_id, status, stop_reason)
    directory = Path(tags[keys.TAG_CHECKPOINT_DIR])
    state = CheckpointDir(directory.parent, run_id).load_last()
    try:
        config = TrainConfig.model_validate(state["config"])
        split = SplitRecord.from_mapping(state["split"], str(directory / "last.pt"))
    except (KeyError, ValueError) as exc:
        raise InputError(f"checkpoint {directory / 'last.pt'} has no usable config or split ({type(exc).__name__})") from exc
    return ResumePoint(run_id=run_id, state=state, split=split, checkpoint_root=str(directory.parent)), config


def resume(
    run_ref: str, *, listener: FitListener | None = None, experiment: str | None = None, on_tracking_event=None
) -> FitResult:
    """Carry on run ``run_ref`` from its last complete epoch, in the same MLflow run."""
    point, config = resume_point(run_ref, experiment=experiment)
    return fit(config, listener=listener, resume_from=point, on_tracking_event=on_tracking_event)


def _find_run(client, run_ref: str, experiment: str | None, uri: str):
    try:
        return _lookup(client, run_ref, experiment, uri)
    except InputError:
        raise
    except Exception as exc:  # a server away, a store that cannot be read
        raise InputError(
            f"--resume {run_ref}: cannot reach the MLflow store at {uri} ({type(exc).__name__}); "
            "check MLFLOW_TRACKING_URI or try again when the server is back"
        ) from exc


def _lookup(client, run_ref: str, experiment: str | None, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_ref)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    name = experiment or "paramdoctor"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if run_ref == "latest":
            runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        else:
            safe = run_ref.replace("'", "\\'")
            runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{safe}'", max_results=2)
            if len(runs) > 1:
                raise InputError(f"--resume {run_ref}: several runs have that name in experiment {name!r}; give the run id")
        if runs:
            return runs[0]
    raise InputError(f"--resume {run_ref}: no such run id, or run name in experiment {name!r}, in {uri}")
