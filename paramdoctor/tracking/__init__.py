"""Record stage: MLflow runs opened and closed cleanly, metrics sent in batches, nothing lost.

Importing this package imports MLflow; the hooks (``paramdoctor.hooks``) do not
need it and work with any sink.
"""

from paramdoctor.liveness import TAG_HEARTBEAT, TAG_HEARTBEAT_EVERY, is_interrupted
from paramdoctor.tracking.run import RunHandle, get_or_create_experiment, resolve_tracking_uri, start_run
from paramdoctor.tracking.sink import MetricsNotSentWarning, MlflowSink, TrackingEvent, TrackingThreadWarning
from paramdoctor.tracking.spool import Spool, resolve_spool_dir
from paramdoctor.tracking.store import prepare_store
from paramdoctor.tracking.values import flatten_params, param_value, truncate

__all__ = [
    "MetricsNotSentWarning",
    "MlflowSink",
    "RunHandle",
    "Spool",
    "TAG_HEARTBEAT",
    "TAG_HEARTBEAT_EVERY",
    "TrackingEvent",
    "TrackingThreadWarning",
    "flatten_params",
    "get_or_create_experiment",
    "is_interrupted",
    "param_value",
    "prepare_store",
    "resolve_spool_dir",
    "resolve_tracking_uri",
    "start_run",
    "truncate",
]
