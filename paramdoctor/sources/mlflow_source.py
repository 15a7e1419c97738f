"""Read MLflow runs into :class:`~paramdoctor.record.RunRecord`.

Only the public ``MlflowClient`` API is used for single runs, so a tracking
server behaves exactly like the local SQLite store. Reading never creates an
experiment, a run or a store: a tracking URI that points at a local file that
does not exist is refused before MLflow gets a chance to create it.

Requests made for one run (:func:`record_from_mlflow`): ``get_run``,
``get_experiment``, one download of ``config.yaml`` from the run's artifact
URI, and one ``get_metric_history`` per metric key. For a whole experiment
(:func:`records_for_experiment`):

- on MLflow's SQL store (``sqlite:///``, ``postgresql://`` tracking URIs):
  plain SELECTs through the store's session, five per 500 runs (runs,
  params, tags, latest metrics, every metric point), no ORM objects
  (:mod:`paramdoctor.sources.sql_bulk`);
- on any other store (a tracking server over HTTP, a file store):
  ``search_runs`` pages of up to 1000 runs (params, tags and latest metrics
  come with them; from a server the ``runs/search`` JSON is read directly),
  and the metric histories once per metric key for all runs of a page
  together when the store offers ``get_metric_history_bulk`` (a server's
  ``get-history-bulk``, 100 runs a request), else one
  ``get_metric_history`` per run and key, :data:`READERS` at a time. Each
  page's histories and configs are read while the next page is searched
  (:func:`iter_records_for_experiment` hands out a page's records while the
  next ones are read);
- and one ``config.yaml`` per run, straight from its artifact URI (no further
  request to the tracking store): read from disk when the artifacts are local
  files, else downloaded (one GET per file from a server's artifact proxy),
  :data:`READERS` at a time.

MLflow's ``get_metric_history_bulk_interval`` is not used: it samples long
histories, and the doctor needs every point.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

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
READERS = 8  # requests in flight at once where each is a round trip to a server (histories, artifact downloads)


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
    return list(iter_records_for_experiment(name, client, mapping=mapping))


def iter_records_for_experiment(
    name: str, client: "MlflowClient | None" = None, *, mapping: dict[str, str] | None = None
) -> Iterator[RunRecord]:
    """:func:`records_for_experiment` one record at a time, in the same order.

    From a tracking server the records come a page (1000 runs) at a time
    while the next pages are read in the background: a caller that
    diagnoses each record as it comes works while the server answers. The
    experiment is looked up before the first record is asked for (an unknown
    name raises at once).
    """
    from paramdoctor.sources import sql_bulk

    client = client or open_client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise InputError(f"experiment '{name}' not found at {client.tracking_uri}{_known_experiments(client)}")
    store = sql_bulk.sql_store(client)
    if store is not None:
        runs, histories = sql_bulk.read_experiment(store, experiment.experiment_id)
        pages: Iterable[tuple[list[Any], dict[str, dict[str, Series]], list[dict[str, Any] | None]]] = [
            (runs, histories, _load_configs(client, runs))
        ]
    else:
        pages = _remote_pages(client, experiment.experiment_id)
    return (
        build_record(run, histories.get(run.info.run_id, {}), config=config, experiment=name, mapping=mapping)
        for runs, histories, configs in pages
        for run, config in zip(runs, configs)
    )


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
    paid once per run of an experiment. Artifacts that are local files are
    read in place (no repository object, no temporary copy).
    """
    from paramdoctor.config.loading import read_text_file
    from paramdoctor.errors import ConfigError

    where = f"run {run.info.run_id} {CONFIG_ARTIFACT}"
    local = _local_artifact(run.info.artifact_uri, CONFIG_ARTIFACT)
    if local is not None:
        try:
            if not local.is_file():
                return None
            return _parse_config(read_text_file(local, where), where)
        except (OSError, ConfigError):
            return None

    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

    with tempfile.TemporaryDirectory(prefix="paramdoctor-") as tmp:
        try:
            uri = add_databricks_profile_info_to_artifact_uri(run.info.artifact_uri, client.tracking_uri)
            repository = get_artifact_repository(uri, tracking_uri=client.tracking_uri)
            downloaded = repository.download_artifacts(CONFIG_ARTIFACT, dst_path=tmp)
            text = read_text_file(downloaded, where)
        except (MlflowException, OSError, ConfigError):
            return None  # an unreadable config artifact: the run's params still say what was trained
    return _parse_config(text, where)


def _parse_config(text: str, where: str) -> dict[str, Any] | None:
    from paramdoctor.config.loading import load_yaml_text
    from paramdoctor.errors import ConfigError

    try:
        data = load_yaml_text(text, where)
    except ConfigError:
        return None
    return data if isinstance(data, dict) else None


def _local_artifact(artifact_uri: str | None, name: str) -> Path | None:
    """The file ``name`` in a run's artifact folder when that folder is on this machine (``file://`` or a path); else None."""
    if not artifact_uri:
        return None
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path)) / name
    if parsed.scheme == "" and os.path.isabs(artifact_uri):
        return Path(artifact_uri) / name
    return None


def _load_configs(client: "MlflowClient", runs: list["Run"]) -> list[dict[str, Any] | None]:
    """Every run's config (:func:`_load_config`): local files read in place, downloads :data:`READERS` at a time.

    Downloads share one artifact repository per artifact root (runs under
    ``<root>/<run id>/artifacts``, MLflow's layout): making a repository per
    run costs a thread pool and, on a tracking server, a capabilities request
    before the listing and the download that ``download_artifacts`` makes.
    One request per run is left: the file itself.
    """
    configs: list[dict[str, Any] | None] = [None] * len(runs)
    remote = []
    for i, run in enumerate(runs):
        if _local_artifact(run.info.artifact_uri, CONFIG_ARTIFACT) is None:
            remote.append(i)
        else:
            configs[i] = _load_config(client, run)
    if not remote:
        return configs
    from concurrent.futures import ThreadPoolExecutor

    downloader = _Downloads(client)
    with tempfile.TemporaryDirectory(prefix="paramdoctor-") as tmp, ThreadPoolExecutor(max_workers=READERS) as pool:
        for i, config in zip(remote, pool.map(lambda i: downloader.config(runs[i], Path(tmp) / f"{i}-{CONFIG_ARTIFACT}"), remote)):
            configs[i] = config
    return configs


class _Downloads:
    """``config.yaml`` of many runs through one artifact repository per artifact root (thread-safe)."""

    def __init__(self, client: "MlflowClient") -> None:
        import threading

        self.client = client
        self.repositories: dict[str, Any] = {}
        self.credentials: dict[str, Any] = {}
        self.lock = threading.Lock()

    def config(self, run: "Run", local: Path) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

        from paramdoctor.config.loading import read_text_file
        from paramdoctor.errors import ConfigError

        where = f"run {run.info.run_id} {CONFIG_ARTIFACT}"
        try:
            uri = add_databricks_profile_info_to_artifact_uri(run.info.artifact_uri, self.client.tracking_uri)
            layout = f"/{run.info.run_id}/artifacts"
            if uri.endswith(layout):
                root, path = uri[: -len(layout)], f"{run.info.run_id}/artifacts/{CONFIG_ARTIFACT}"
            else:
                root, path = uri, CONFIG_ARTIFACT
            creds = self.plain_http(root)
            if creds is not None:
                text = _http_text(creds, path, where)
            else:
                self.repository(root)._download_file(path, str(local))
                text = read_text_file(local, where)
        except (MlflowException, OSError, ConfigError):
            return None  # an unreadable config artifact: the run's params still say what was trained
        finally:
            local.unlink(missing_ok=True)
        return _parse_config(text, where)

    def plain_http(self, root: str) -> Any | None:
        """The host credentials of ``root``'s repository when its files are plain GETs from a server; None otherwise.

        An HTTP artifact repository (``http://``, or a tracking server's
        ``mlflow-artifacts:/`` proxy without multipart downloads) downloads a
        file with one GET of its path; the credentials it would look up again
        for each file (reading MLflow's credentials file) are looked up once
        here, and the file is read into memory, not through a temporary file.
        """
        with self.lock:
            if root in self.credentials:
                return self.credentials[root]
        repository = self.repository(root)
        creds = None
        try:
            from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

            if isinstance(repository, HttpArtifactRepository):
                multipart = getattr(repository, "_is_multipart_download_enabled", None)
                if multipart is None or not multipart():
                    creds = repository._host_creds
        except Exception:  # noqa: BLE001 - any doubt: the repository's own download
            creds = None
        with self.lock:
            self.credentials[root] = creds
        return creds

    def repository(self, root: str) -> Any:
        with self.lock:
            repository = self.repositories.get(root)
            if repository is None:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                repository = self.repositories[root] = get_artifact_repository(root, tracking_uri=self.client.tracking_uri)
            return repository


def _remote_pages(
    client: "MlflowClient", experiment_id: str
) -> Iterator[tuple[list["Run"], dict[str, dict[str, Series]], list[dict[str, Any] | None]]]:
    """(runs, histories, configs) of each page of an experiment, through the client API (a tracking server, a file store).

    A background thread searches the pages one after another; each page has
    its histories and configs read as soon as it is found (two pages at a
    time). The search, the history requests and the downloads then keep
    several of a server's workers busy instead of one after the other, and
    the caller works on one page while the next ones are read. Pages come in
    search order; the first error (of the search or of a page) is raised
    where its page would have come. A caller that stops early cancels the
    pages not yet started.
    """
    import queue
    import threading
    from concurrent.futures import ThreadPoolExecutor

    _skip_absent_databricks_probes()
    found: "queue.Queue[Any]" = queue.Queue()
    done = object()
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=2)

    def search() -> None:
        try:
            for page in _search_pages(client, [experiment_id]):
                if stop.is_set():
                    return
                found.put(pool.submit(lambda page=page: (page, _bulk_histories(client, page), _load_configs(client, page))))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            found.put(exc)
        finally:
            found.put(done)

    searcher = threading.Thread(target=search, name="paramdoctor-search", daemon=True)
    searcher.start()
    try:
        while True:
            item = found.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.result()
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _http_text(creds: Any, path: str, where: str) -> str:
    """A file from an HTTP artifact repository as ``_download_file`` GETs it, as text (``read_text_file``'s limit and decoding)."""
    import posixpath

    from mlflow.utils.request_utils import augmented_raise_for_status
    from mlflow.utils.rest_utils import http_request

    from paramdoctor.config.loading import MAX_FILE_BYTES
    from paramdoctor.errors import ConfigError

    response = http_request(creds, posixpath.join("/", path), "GET")
    augmented_raise_for_status(response)
    data = response.content
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8") from None


def _search_all(client: "MlflowClient", experiment_ids: list[str]) -> Iterable["Run"]:
    """Every active run of ``experiment_ids``, newest first (:func:`_search_pages`, one after another)."""
    for page in _search_pages(client, experiment_ids):
        yield from page


def _search_pages(client: "MlflowClient", experiment_ids: list[str]) -> Iterable[list["Run"]]:
    """Every active run of ``experiment_ids``, newest first: ``search_runs`` pages of 1000.

    On a tracking server the pages come from its ``runs/search`` endpoint as
    plain JSON (:func:`_server_search`): the same request ``search_runs``
    makes, without turning every param, tag and metric into a protobuf
    message and then an entity (most of the client's time on a page).
    """
    search = _server_search(getattr(getattr(client, "_tracking_client", None), "store", None))
    token = None
    while True:
        if search is not None:
            page, token = search(experiment_ids, 1000, ["attributes.start_time DESC"], token)
        else:
            paged = client.search_runs(
                experiment_ids, max_results=1000, order_by=["attributes.start_time DESC"], page_token=token
            )
            page, token = list(paged), paged.token
        yield page
        if not token:
            return


def _server_search(store: Any):
    """A tracking server's ``runs/search`` read as JSON into light runs (:class:`~paramdoctor.sources.sql_bulk.Run`); None for other stores.

    The fields a record is built from, as ``Run.from_proto`` reads them:
    id, name, status, artifact URI, params and tags (the last value of a key wins), and
    the latest metric per key. Errors are MLflow's own
    (``verify_rest_response``), as through ``search_runs``.
    """
    try:
        from mlflow.protos.service_pb2 import SearchRuns
        from mlflow.store.tracking.rest_store import RestStore
    except ImportError:
        return None
    if type(store) is not RestStore:
        return None
    route = getattr(store, "_METHOD_TO_INFO", {}).get(SearchRuns)
    if route is None:
        return None
    endpoint, method = route
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    from paramdoctor.sources import sql_bulk

    def search(experiment_ids: list[str], max_results: int, order_by: list[str], token: str | None):
        body: dict[str, Any] = {
            "experiment_ids": [str(e) for e in experiment_ids], "filter": "", "run_view_type": "ACTIVE_ONLY",
            "max_results": max_results, "order_by": list(order_by),
        }
        if token:
            body["page_token"] = token
        response = verify_rest_response(http_request(store.get_host_creds(), endpoint, method, json=body), endpoint)
        payload = response.json()
        runs = []
        for item in payload.get("runs", []):
            info, data = item.get("info", {}), item.get("data", {})
            tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
            run_id = info.get("run_id") or info.get("run_uuid", "")
            runs.append(sql_bulk.Run(
                sql_bulk.RunInfo(
                    run_id,
                    info.get("run_name", ""),
                    str(info.get("experiment_id", "")),
                    info.get("status", "RUNNING"),
                    info.get("artifact_uri", ""),
                ),
                sql_bulk.RunData(
                    params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                    tags=tags,
                    metrics={m["key"]: float(m.get("value", 0.0)) for m in data.get("metrics", [])},
                ),
            ))
        return runs, payload.get("next_page_token") or None

    return search


def _skip_absent_databricks_probes() -> None:
    """Record once that Databricks' modules are not installed, where they are not.

    Before every request MLflow's client asks whether it runs on Databricks
    by importing ``dbruntime``, ``pyspark`` and ``IPython``; where they are
    absent each attempt searches ``sys.path`` again under the import lock,
    ~1.6 ms a request, and the readers' threads queue on that lock. A
    ``None`` entry in ``sys.modules`` is how Python records "not importable":
    the same ImportError, at once. Modules that are installed are left alone.
    """
    import importlib.util

    for name in ("dbruntime", "pyspark", "IPython"):
        if name in sys.modules:
            continue
        try:
            absent = importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            continue
        if absent:
            sys.modules[name] = None  # type: ignore[assignment]


def _bulk_histories(client: "MlflowClient", runs: list["Run"]) -> dict[str, dict[str, Series]]:
    """Full metric histories of ``runs``: {run_id: {key: Series}}, each run's keys in sorted order.

    Per metric key and block of 100 runs, one bulk request: the store's
    ``get_metric_history_bulk``, or on a tracking server its
    ``get-history-bulk`` endpoint (the unsampled one MLflow's UI reads);
    where neither is offered, or a block may have been cut short, one
    ``get_metric_history`` per run and key. Requests go :data:`READERS` at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.store.tracking import MAX_RESULTS_GET_METRIC_HISTORY

    out: dict[str, dict[str, Series]] = {run.info.run_id: {} for run in runs}
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None) or _server_bulk(store)
    runs_by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.data.metrics:
            runs_by_key.setdefault(key, []).append(run.info.run_id)
    blocks = [
        (key, run_ids[start : start + _BULK_CHUNK])
        for key, run_ids in sorted(runs_by_key.items())
        for start in range(0, len(run_ids), _BULK_CHUNK)
    ]

    def read_block(block: tuple[str, list[str]]) -> list[Any] | None:
        return bulk(block[1], block[0], MAX_RESULTS_GET_METRIC_HISTORY) if bulk is not None else None

    def history(pair: tuple[str, str]) -> Series:
        return series_from_metrics(client.get_metric_history(*pair))

    one_by_one: list[tuple[str, str]] = []  # (run id, key) pairs read with one request each
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for (key, chunk), rows in zip(blocks, pool.map(read_block, blocks) if bulk is not None else [None] * len(blocks)):
            if rows is None or len(rows) >= MAX_RESULTS_GET_METRIC_HISTORY:  # no bulk API, or possibly cut short
                one_by_one.extend((run_id, key) for run_id in chunk)
                continue
            grouped: dict[str, list[Any]] = {run_id: [] for run_id in chunk}
            for row in rows:
                grouped.setdefault(row.run_id, []).append(row)  # a Metric with a run_id
            for run_id, metrics in grouped.items():
                out[run_id][key] = series_from_metrics(metrics)
        for (run_id, key), series in zip(one_by_one, pool.map(history, one_by_one)):
            out[run_id][key] = series
    return {run_id: dict(sorted(series.items())) for run_id, series in out.items()}


class _ServerMetric:
    """One row of the server's bulk history: what :func:`series_from_metrics` and the grouping read."""

    __slots__ = ("run_id", "step", "timestamp", "value")

    def __init__(self, row: dict[str, Any]) -> None:
        self.run_id, self.step, self.timestamp = row["run_id"], int(row["step"]), int(row["timestamp"])
        self.value = float(row["value"])


def _server_bulk(store: Any):
    """``get_metric_history_bulk`` over a tracking server's ``ajax-api/2.0/mlflow/metrics/get-history-bulk``; None for other stores.

    The endpoint (MLflow's UI reads it) runs the server's own
    ``get_metric_history_bulk``: every point, for up to 100 runs and one key,
    ordered as the SQL store orders them. A refused request (an older or
    locked-down server) returns None for that block, which is then read run
    by run.
    """
    try:
        from mlflow.store.tracking.rest_store import RestStore
    except ImportError:
        return None
    if not isinstance(store, RestStore):
        return None
    from mlflow.utils.rest_utils import http_request

    def bulk(run_ids: list[str], key: str, max_results: int) -> list[_ServerMetric] | None:
        try:
            response = http_request(
                store.get_host_creds(),
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                "GET",
                params={"run_id": list(run_ids), "metric_key": key, "max_results": max_results},
                raise_on_status=False,
            )
            if response.status_code != 200:
                return None
            return [_ServerMetric(row) for row in response.json().get("metrics", [])]
        except (ValueError, KeyError, TypeError, OSError):
            return None

    return bulk


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
