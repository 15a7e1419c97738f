"""Sources: where run records come from (MLflow runs, exported JSON, other tools' logs).

Importing this package is cheap; MLflow is imported only when a store is read.
"""

from paramdoctor.sources.mlflow_source import (
    export_run,
    iter_records_for_experiment,
    open_client,
    record_from_mlflow,
    records_for_experiment,
    tracking_uri,
    unflatten_params,
)
from paramdoctor.sources.resolve import DEFAULT_EXPERIMENT, ResolvedRun, resolve, resolve_run

__all__ = [
    "DEFAULT_EXPERIMENT",
    "ResolvedRun",
    "export_run",
    "iter_records_for_experiment",
    "open_client",
    "record_from_mlflow",
    "records_for_experiment",
    "resolve",
    "resolve_run",
    "tracking_uri",
    "unflatten_params",
]
