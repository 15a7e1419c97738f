"""Log an imported run record as an MLflow run, so the MLflow UI and ``diagnose`` see it like any other.

Everything is checked and converted before the first request, so bad input
creates nothing in the store. Requests: one experiment lookup (and a create
when missing), one ``create_run``, ``log_batch`` calls of at most 100 params
and 1000 metrics each (MLflow's per-request limits), one ``log_artifact`` for
the original log file, one ``set_terminated``. Should a request fail after the
run exists (the store goes away, the artifact cannot be copied), the run is
deleted before the error is raised: no half-written run stays visible.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.record import RunRecord

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlflow.db"
TAG_IMPORT_PREFIX = "paramdoctor.import."
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
MAX_PARAM_KEY = 250
MAX_PARAM_VALUE = 6000
_META_TAGS = ("format", "run_index", "runs_in_file", "best_metric", "best_model_checkpoint", "best_global_step",
              "max_steps", "max_epochs", "evaluations", "peak_lr", "x_axis")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store ``mlflow.db`` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@dataclass
class PreparedRun:
    """What will be logged, checked and converted before any request is made."""

    params: list[tuple[str, str]]
    metrics: list[tuple[str, float, int]]  # key, value, step
    tags: dict[str, str]


def prepare(record: RunRecord) -> PreparedRun:
    """Params, metrics (integer steps) and tags for ``record``; InputError when a series cannot be an MLflow metric."""
    params = [(_param_key(k), str(v)[:MAX_PARAM_VALUE]) for k, v in sorted(record.params.items())]
    params = list(dict(params).items())
    metrics: list[tuple[str, float, int]] = []
    for key, series in sorted(record.series.items()):
        safe = keys.safe_key(key)
        for x, value in zip(series.steps.tolist(), series.values.tolist()):
            if not math.isfinite(x) or not float(x).is_integer():
                raise InputError(f"series {key}: position {x!r} is not a whole {record.x_unit} number (MLflow steps are integers)")
            metrics.append((safe, float(value), int(x)))
    tags = {keys.TAG_SOURCE: record.source, keys.TAG_X_UNIT: record.x_unit}
    monitor = record.meta.get("monitor")
    if isinstance(monitor, str) and monitor:
        tags[keys.TAG_MONITOR] = monitor
        mode = record.meta.get("mode")
        tags[keys.TAG_MODE] = mode if mode in ("min", "max") else ("min" if monitor.endswith("loss") else "max")
    for meta_key, tag in (("steps_per_epoch", keys.TAG_STEPS_PER_EPOCH), ("train_samples", keys.TAG_TRAIN_SAMPLES)):
        if isinstance(record.meta.get(meta_key), int):
            tags[tag] = str(record.meta[meta_key])
    for name in _META_TAGS:
        value = record.meta.get(name)
        if value is not None and not isinstance(value, (dict, list)):
            tags[TAG_IMPORT_PREFIX + name] = str(value)[:MAX_PARAM_VALUE]
    eval_sets = record.meta.get("eval_sets")
    if isinstance(eval_sets, list) and eval_sets:
        tags[TAG_IMPORT_PREFIX + "eval_sets"] = ",".join(str(s) for s in eval_sets)[:MAX_PARAM_VALUE]
    source_file = record.meta.get("source_file")
    if source_file:
        tags[TAG_IMPORT_PREFIX + "file"] = Path(str(source_file)).name
    return PreparedRun(params, metrics, tags)


def log_record(
    record: RunRecord,
    *,
    experiment: str,
    run_name: str | None = None,
    artifact: str | Path | None = None,
    client: "MlflowClient | None" = None,
) -> str:
    """Create a FINISHED MLflow run holding ``record``; returns its run id."""
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.run import get_or_create_experiment

    prepared = prepare(record)
    if client is None:
        from paramdoctor.tracking.store import prepare_store

        prepare_store(tracking_uri())  # a first import in a fresh directory makes the store whole
        client = MlflowClient(tracking_uri=tracking_uri())
    where = client.tracking_uri if hasattr(client, "tracking_uri") else tracking_uri()
    run_id = None
    try:
        experiment_id = get_or_create_experiment(client, experiment)  # created or marked as model training
        run = client.create_run(experiment_id, run_name=run_name or record.run_name, tags=prepared.tags)
        run_id = run.info.run_id
        for start in range(0, len(prepared.params), PARAMS_PER_BATCH):
            chunk = prepared.params[start : start + PARAMS_PER_BATCH]
            client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])
        now = int(time.time() * 1000)
        for start in range(0, len(prepared.metrics), METRICS_PER_BATCH):
            chunk = prepared.metrics[start : start + METRICS_PER_BATCH]
            client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v, step in chunk])
        if artifact is not None:
            client.log_artifact(run_id, str(artifact))
        client.set_terminated(run_id, "FINISHED")
    except (MlflowException, OSError) as exc:
        if run_id is not None:
            _discard(client, run_id)
        text = str(exc).strip().splitlines()
        raise InputError(f"cannot log the imported run to MLflow at {where} ({text[0][:200] if text else type(exc).__name__})") from None
    return run_id


def _discard(client: "MlflowClient", run_id: str) -> None:
    """Delete a run whose logging failed part way, so an import that fails leaves no half-written run.

    MLflow's delete marks the run deleted (hidden from the UI and searches;
    ``mlflow gc`` removes it for good). When even that fails, the run is marked
    FAILED so it does not look finished.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.delete_run(run_id)
    except (MlflowException, OSError):
        try:
            client.set_terminated(run_id, "FAILED")
        except (MlflowException, OSError):
            pass


def _param_key(name: str) -> str:
    return keys.safe_key(str(name))[:MAX_PARAM_KEY] or "_"
