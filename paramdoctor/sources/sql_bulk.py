"""A whole experiment straight from MLflow's SQL tables: runs, params, tags and every metric point in a few queries.

``MlflowClient.search_runs`` on a SQL store loads each run through
SQLAlchemy's ORM (one object per param, tag and latest metric, then one
MLflow entity each) and ``get_metric_history_bulk`` does the same per metric
point: about 10 ms per run of 60 params, most of a 10,000-run diagnosis. When
the client's store is MLflow's own ``SqlAlchemyStore`` (SQLite, PostgreSQL,
MySQL: ``sqlite:///...``, ``postgresql://...`` tracking URIs), this module
reads the same rows with plain SELECTs through the store's own session:

- one query for the experiment's active runs, in ``search_runs``' order
  (newest first, ties by run id);
- per block of :data:`BLOCK` runs: one query each for params, tags and
  latest-metric keys, and one for every metric point of those runs, ordered
  as ``get_metric_history_bulk`` orders them (run, key, timestamp, step,
  value), so that a step logged twice keeps the same value.

The result is what the client API gives, row for row
(``tests/sources/test_sql_bulk.py`` compares the two). Any other store
(a tracking server over HTTP, a file store, a subclass of the SQL store with
its own filters, such as workspaces) returns None here and goes through the
client API.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paramdoctor.record import Series

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

BLOCK = 500  # run ids per IN (...) list: far below SQLite's and PostgreSQL's limits on bound parameters
RUN_NAME_TAG = "mlflow.runName"


@dataclass
class RunInfo:
    """The fields of ``mlflow.entities.RunInfo`` that building a record reads."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    artifact_uri: str | None


@dataclass
class RunData:
    """The fields of ``mlflow.entities.RunData`` that building a record reads (``metrics``: latest value per key)."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """A run as ``search_runs`` would give it, without the ORM: ``info`` and ``data``."""

    info: RunInfo
    data: RunData


def sql_store(client: MlflowClient) -> Any | None:
    """The client's store when it is MLflow's plain ``SqlAlchemyStore`` (not a subclass); None otherwise."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store).__module__ != "mlflow.store.tracking.sqlalchemy_store":  # not MLflow's SqlAlchemyStore: no need to import it
        return None
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # an MLflow without SQL support
        return None
    if type(store) is not SqlAlchemyStore or not hasattr(store, "ManagedSessionMaker"):
        return None
    return store


def read_experiment(store: Any, experiment_id: str) -> tuple[list[Run], dict[str, dict[str, Series]]]:
    """The active runs of ``experiment_id``, newest first, and their full metric histories ``{run_id: {key: Series}}``."""
    from mlflow.entities import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import select

    with store.ManagedSessionMaker() as session:
        rows = session.execute(
            select(SqlRun.run_uuid, SqlRun.name, SqlRun.experiment_id, SqlRun.status, SqlRun.artifact_uri)
            .where(SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == LifecycleStage.ACTIVE)
            .order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)
        ).all()
        runs = [Run(RunInfo(r[0], r[1], str(r[2]), r[3], r[4]), RunData()) for r in rows]
        by_id = {run.info.run_id: run for run in runs}
        histories: dict[str, dict[str, Series]] = {run.info.run_id: {} for run in runs}
        for start in range(0, len(runs), BLOCK):
            block = [run.info.run_id for run in runs[start : start + BLOCK]]
            for run_id, key, value in session.execute(select(SqlParam.run_uuid, SqlParam.key, SqlParam.value).where(SqlParam.run_uuid.in_(block))):
                by_id[run_id].data.params[key] = value
            for run_id, key, value in session.execute(select(SqlTag.run_uuid, SqlTag.key, SqlTag.value).where(SqlTag.run_uuid.in_(block))):
                by_id[run_id].data.tags[key] = value
            latest = session.execute(
                select(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value, SqlLatestMetric.is_nan).where(
                    SqlLatestMetric.run_uuid.in_(block)
                )
            )
            for run_id, key, value, is_nan in latest:
                by_id[run_id].data.metrics[key] = math.nan if is_nan else value
            points = session.execute(
                select(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.timestamp, SqlMetric.value, SqlMetric.is_nan)
                .where(SqlMetric.run_uuid.in_(block))
                .order_by(SqlMetric.run_uuid, SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
            )
            _histories_into(histories, by_id, points)
    for run in runs:
        if not run.info.run_name:  # as MLflow's entity does: the name tag stands in for an empty name
            run.info.run_name = run.data.tags.get(RUN_NAME_TAG, run.info.run_name)
        # keys in sorted order, as the client path inserts them
        histories[run.info.run_id] = dict(sorted(histories[run.info.run_id].items()))
    return runs, histories


def _histories_into(histories: dict[str, dict[str, Series]], by_id: dict[str, Run], points: Iterable[Any]) -> None:
    """Group metric rows (ordered by run, key, timestamp, step, value) into one Series per run and key.

    The same rule as :func:`paramdoctor.sources.mlflow_source.series_from_metrics`:
    when a step was logged twice the latest timestamp wins (the later row on a
    tie), NaN is kept, and MLflow's stand-in for infinity (+/- the largest
    float) becomes infinity again. Only keys with a latest value are read, as
    the client path reads only ``run.data.metrics``.
    """
    current: tuple[str, str] | None = None
    latest: dict[int, tuple[int, float]] = {}

    def flush() -> None:
        if current is not None and current[1] in by_id[current[0]].data.metrics:
            pairs = [(float(step), value) for step, (_, value) in sorted(latest.items())]
            histories[current[0]][current[1]] = Series.from_pairs(pairs)

    biggest = sys.float_info.max
    for run_id, key, step, timestamp, value, is_nan in points:
        if (run_id, key) != current:
            flush()
            current, latest = (run_id, key), {}
        previous = latest.get(step)
        if previous is None or timestamp >= previous[0]:
            value = math.nan if is_nan else float(value)
            if abs(value) == biggest:
                value = math.copysign(math.inf, value)
            latest[step] = (timestamp, value)
    flush()
