"""Read MLflow runs into :class:`~paramdoctor.record.RunRecord`.

Only the public ``MlflowClient`` API is used for single runs, so a tracking
server behaves exactly like the local SQLite store. Reading never creates an
experiment, a run or a store: a tracking URI that points at a local file that
does not exist is refused before MLflow gets a chance to create it.

Requests made for one run (:func:`record_from_mlflow`): ``get_run``,
``get_experiment``, one download of ``config.yaml`` from the run's artifact
URI, and one ``get_metric_history`` per metric key. For a whole experiment
(:func:`records_for_experiment`): ``search_runs`` pages of up to 1000 runs
(params, tags and latest metrics come with them), one ``config.yaml`` download
per run (straight from its artifact URI: no further request to the tracking
store), and the metric histories fetched once per metric key for all runs
together when the store offers ``get_metric_history_bulk`` (the SQL stores do:
one query per key and per 100 runs, unsampled), else one
``get_metric_history`` per run and key. MLflow's ``get_metric_history_bulk_interval``
is not used: it samples long histories, and the doctor needs every point.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.record import RUN_STATES, RunRecord, Series

if TYPE_CHECKING:  # mlflow is heavy: imported inside the functions that need it
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

CONFIG_ARTIFACT = "config.yaml"
DEFAULT_SQLITE_URI = "sqlite:///mlflow.db"
# Series whose presence says "these curves already use paramdoctor's keys".
_NATIVE_KEYS = (keys.TRAIN_LOSS, keys.TRAIN_ACC, keys.VAL_LOSS, keys.VAL_ACC, keys.STEP_LOSS)
# Tools whose MLflow loggers use the global step (not the epoch) as the x of evaluation metrics.
_STEP_INDEXED_TOOLS = ("hf", "transformers", "lightning")
_BULK_CHUNK = 100


def tracking_uri() -> str:
    """The tracking URI paramdoctor reads from.

    ``MLFLOW_TRACKING_URI`` when set; otherwise MLflow's own default when it is
    SQLite (MLflow 3: ``mlflow.db`` in the working directory); otherwise
    ``sqlite:///mlflow.db``, the store ``paramdoctor train`` writes to.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    import mlflow

    uri = mlflow.get_tracking_uri()
    return uri if uri.startswith("sqlite:") else DEFAULT_SQLITE_URI


def open_client(uri: str | None = None) -> "MlflowClient":
    """An ``MlflowClient`` on ``uri``, refusing local stores that do not exist yet.

    Opening a missing SQLite file or ``mlruns`` folder would create it (and a
    "Default" experiment); reading a run must never do that.
    """
    uri = uri or tracking_uri()
    local = _local_store_path(uri)
    if local is not None and not local.exists():
        raise InputError(
            f"no MLflow store at {uri} (nothing logged here yet: run `paramdoctor train` first, "
            "or set MLFLOW_TRACKING_URI to your store)"
        )
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.store import prepare_store

    prepare_store(uri, create=False)  # repairs a store left half-made; never creates one

    return MlflowClient(tracking_uri=uri)


def record_from_mlflow(
    run_id: str, client: "MlflowClient | None" = None, *, mapping: dict[str, str] | None = None
) -> RunRecord:
    """The run ``run_id`` as a record: config, params, tags, state and every metric's full history.

    ``mapping`` renames metric keys (``{"val/loss": "eval_loss"}``) for runs
    logged by other tools; without it, runs that do not use paramdoctor's keys
    go through :func:`paramdoctor.importers.normalize_metric_names`.
    """
    from mlflow.exceptions import MlflowException

    client = client or open_client()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(
                f"run '{run_id}' not found at {client.tracking_uri} (check the id in the MLflow UI)"
            ) from None
        raise InputError(f"cannot read run '{run_id}' from {client.tracking_uri} ({_first_line(exc)})") from None
    experiment = _experiment_name(client, run.info.experiment_id)
    histories = {key: client.get_metric_history(run_id, key) for key in sorted(run.data.metrics)}
    series = {key: series_from_metrics(metrics) for key, metrics in histories.items()}
    return build_record(run, series, config=_load_config(client, run), experiment=experiment, mapping=mapping)


def records_for_experiment(
    name: str, client: "MlflowClient | None" = None, *, mapping: dict[str, str] | None = None
) -> list[RunRecord]:
    """Every active run of experiment ``name``, newest first, as records (see the module doc for the requests)."""
    client = client or open_client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise InputError(f"experiment '{name}' not found at {client.tracking_uri}{_known_experiments(client)}")
    runs = list(_search_all(client, [experiment.experiment_id]))
    histories = _bulk_histories(client, runs)
    return [
        build_record(
            run,
            histories.get(run.info.run_id, {}),
            config=_load_config(client, run),
            experiment=name,
            mapping=mapping,
        )
        for run in runs
    ]


def export_run(record: RunRecord, path: str | Path) -> Path:
    """Write ``record`` as a ``paramdoctor.run/v1`` JSON file that ``diagnose PATH`` reads back."""
    return record.save(path)


# --- building records ----------------------------------------------------------


def series_from_metrics(metrics: Iterable[Any]) -> Series:
    """MLflow metric entities -> one Series; when a step was logged twice, the latest value wins.

    MLflow's SQL stores save +/-inf as +/-``sys.float_info.max``; those become
    infinities again, since a diverged loss is evidence.
    """
    latest: dict[int, tuple[int, float]] = {}
    for m in metrics:
        previous = latest.get(m.step)
        if previous is None or m.timestamp >= previous[0]:
            value = float(m.value)
            if abs(value) == sys.float_info.max:
                value = math.copysign(math.inf, value)
            latest[m.step] = (m.timestamp, value)
    return Series.from_pairs([(float(step), value) for step, (_, value) in sorted(latest.items())])


def build_record(
    run: "Run",
    series: dict[str, Series],
    *,
    config: dict[str, Any] | None,
    experiment: str | None,
    mapping: dict[str, str] | None = None,
) -> RunRecord:
    """Assemble a record from a run entity and its fetched series (no requests made here)."""
    params = dict(run.data.params)
    tags = dict(run.data.tags)
    if config is None:
        config = unflatten_params(params)
    source = tags.get(keys.TAG_SOURCE, "paramdoctor")
    x_unit = tags.get(keys.TAG_X_UNIT, "epoch")
    if x_unit not in ("epoch", "step"):
        x_unit = "epoch"
    if mapping or not any(k in series for k in _NATIVE_KEYS):
        series, tool = _normalize(series, mapping)
        if tool:
            source = tool
            if any(t in tool.lower() for t in _STEP_INDEXED_TOOLS):
                x_unit = "step"
    status = run.info.status if run.info.status in RUN_STATES else "UNKNOWN"
    return RunRecord(
        series=series,
        config=config,
        params=params,
        tags=tags,
        meta=_meta(tags, config, series),
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        experiment=experiment,
        status=status,
        source=source,
        x_unit=x_unit,
    )


def unflatten_params(params: dict[str, str]) -> dict[str, Any]:
    """``{"optimizer.lr": "0.001"}`` -> ``{"optimizer": {"lr": 0.001}}``, values parsed as YAML scalars."""
    from paramdoctor.config.loading import parse_value, unflatten

    return unflatten({dotted: parse_value(raw) for dotted, raw in params.items()})


def _meta(tags: dict[str, str], config: dict[str, Any], series: dict[str, Series]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    num_classes = _as_int(tags.get(keys.TAG_NUM_CLASSES))
    if num_classes is not None:
        meta["num_classes"] = num_classes
    for meta_key, tag in (
        ("monitor", keys.TAG_MONITOR),
        ("mode", keys.TAG_MODE),
        ("stop_reason", keys.TAG_STOP_REASON),
        ("failure", keys.TAG_FAILURE),
    ):
        if tags.get(tag):
            meta[meta_key] = tags[tag]
    trainer = config.get("trainer") if isinstance(config, dict) else None
    max_epochs = _as_int(trainer.get("max_epochs")) if isinstance(trainer, dict) else None
    if max_epochs is not None:
        meta["max_epochs"] = max_epochs
    for meta_key, tag in (("steps_per_epoch", keys.TAG_STEPS_PER_EPOCH), ("train_samples", keys.TAG_TRAIN_SAMPLES)):
        count = _as_int(tags.get(tag))
        if count is not None:
            meta[meta_key] = count
    for meta_key, key in (("best_epoch", keys.BEST_EPOCH), ("best_value", keys.BEST_VALUE)):
        s = series.get(key)
        if s is not None and len(s):
            value = float(s.values[-1])
            meta[meta_key] = int(value) if meta_key == "best_epoch" and value.is_integer() else value
    return meta


def _normalize(series: dict[str, Series], mapping: dict[str, str] | None) -> tuple[dict[str, Series], str | None]:
    try:
        from paramdoctor.importers import normalize_metric_names
    except ImportError:
        if mapping:
            raise InputError(
                "--map needs paramdoctor.importers, which is missing from this installation (reinstall paramdoctor)"
            ) from None
        return series, None  # keep the tool's own names: rules that need paramdoctor keys report "could not judge"
    return normalize_metric_names(series, mapping)


def _load_config(client: "MlflowClient", run: "Run") -> dict[str, Any] | None:
    """The nested config from the run's ``config.yaml`` artifact, or None when it has none.

    Read through the artifact repository of ``run.info.artifact_uri``, which
    the run entity already holds: ``client.download_artifacts`` would resolve
    a ``runs:/`` URI first, fetching the whole run (params, tags, metrics) again
    and looking for a logged model of that name, ~20x the cost of the read,
    paid once per run of an experiment.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

    from paramdoctor.config.loading import load_yaml_text, read_text_file
    from paramdoctor.errors import ConfigError

    with tempfile.TemporaryDirectory(prefix="paramdoctor-") as tmp:
        try:
            uri = add_databricks_profile_info_to_artifact_uri(run.info.artifact_uri, client.tracking_uri)
            repository = get_artifact_repository(uri, tracking_uri=client.tracking_uri)
            local = repository.download_artifacts(CONFIG_ARTIFACT, dst_path=tmp)
            text = read_text_file(local, f"run {run.info.run_id} {CONFIG_ARTIFACT}")
        except (MlflowException, OSError, ConfigError):
            return None  # an unreadable config artifact: the run's params still say what was trained
    try:
        data = load_yaml_text(text, f"run {run.info.run_id} {CONFIG_ARTIFACT}")
    except ConfigError:
        return None
    return data if isinstance(data, dict) else None


def _search_all(client: "MlflowClient", experiment_ids: list[str]) -> Iterable["Run"]:
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, max_results=1000, order_by=["attributes.start_time DESC"], page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _bulk_histories(client: "MlflowClient", runs: list["Run"]) -> dict[str, dict[str, Series]]:
    """Full metric histories of ``runs``: {run_id: {key: Series}}."""
    from mlflow.store.tracking import MAX_RESULTS_GET_METRIC_HISTORY

    out: dict[str, dict[str, Series]] = {run.info.run_id: {} for run in runs}
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    runs_by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.data.metrics:
            runs_by_key.setdefault(key, []).append(run.info.run_id)
    for key, run_ids in sorted(runs_by_key.items()):
        for start in range(0, len(run_ids), _BULK_CHUNK):
            chunk = run_ids[start : start + _BULK_CHUNK]
            rows = bulk(chunk, key, MAX_RESULTS_GET_METRIC_HISTORY) if bulk is not None else None
            if rows is None or len(rows) >= MAX_RESULTS_GET_METRIC_HISTORY:  # no bulk API, or possibly cut short
                for run_id in chunk:
                    out[run_id][key] = series_from_metrics(client.get_metric_history(run_id, key))
                continue
            grouped: dict[str, list[Any]] = {run_id: [] for run_id in chunk}
            for row in rows:
                grouped.setdefault(row.run_id, []).append(row)  # a Metric with a run_id
            for run_id, metrics in grouped.items():
                out[run_id][key] = series_from_metrics(metrics)
    return out


def _experiment_name(client: "MlflowClient", experiment_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_experiment(experiment_id).name
    except MlflowException:
        return None


def _known_experiments(client: "MlflowClient") -> str:
    try:
        names = [e.name for e in client.search_experiments(max_results=10)]
    except Exception:  # noqa: BLE001 - a hint only; the error line is what matters
        return ""
    return f" (experiments there: {', '.join(sorted(names))})" if names else " (the store has no experiments)"


def _local_store_path(uri: str) -> Path | None:
    """The file or folder behind a local tracking URI; None for servers and databases elsewhere."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return None if not path or path == ":memory:" else Path(path)
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and ("/" in uri or os.sep in uri or uri.startswith(".")):  # a bare path: ./mlruns
        return Path(uri)
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        try:
            as_float = float(str(value))
        except (TypeError, ValueError):
            return None
        return int(as_float) if as_float.is_integer() else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
