"""Record stage: MLflow runs opened and closed cleanly, metrics sent in batches.

Importing this package imports MLflow; the hooks (``paramdoctor.hooks``) do not
need it and work with any sink.
"""

from paramdoctor.tracking.run import RunHandle, get_or_create_experiment, resolve_tracking_uri, start_run
from paramdoctor.tracking.sink import MetricsNotSentWarning, MlflowSink
from paramdoctor.tracking.values import flatten_params, param_value, truncate

__all__ = [
    "MetricsNotSentWarning",
    "MlflowSink",
    "RunHandle",
    "flatten_params",
    "get_or_create_experiment",
    "param_value",
    "resolve_tracking_uri",
    "start_run",
    "truncate",
]
