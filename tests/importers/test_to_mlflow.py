"""Logging an imported record to MLflow: a failure after the run exists leaves no visible half-written run."""

from __future__ import annotations

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers.to_mlflow import log_record
from paramdoctor.record import RunRecord, Series


def test_a_failure_after_create_run_deletes_the_run(store_uri, tmp_path):
    """The artifact to attach is gone by the time it is copied: the metrics are logged, then the copy fails."""
    record = RunRecord(series={keys.VAL_LOSS: Series([1, 2], [1.0, 0.9])}, params={"lr": "0.1"}, source="csv")
    client = MlflowClient(store_uri)
    with pytest.raises(InputError, match=r"^cannot log the imported run to MLflow at sqlite:///"):
        log_record(record, experiment="imports", run_name="half", artifact=tmp_path / "vanished.csv", client=client)
    experiment = client.get_experiment_by_name("imports")
    assert client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY) == []
    deleted = client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_name for r in deleted] == ["half"]
