"""Shared fixtures: every test gets its own MLflow store and working directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Fewer threads keeps the suite fast and stable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """One migrated MLflow SQLite database: creating one runs its migrations (seconds), copying it is instant."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """MLFLOW_TRACKING_URI for a SQLite store in ``tmp_path`` (also the working directory), not yet created."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def migrated_store_uri(tracking_uri, tmp_path, migrated_mlflow_db) -> str:
    """Like ``tracking_uri``, with the store already created (copied from the migrated template)."""
    shutil.copyfile(migrated_mlflow_db, tmp_path / "mlflow.db")
    return tracking_uri


_REPO_MLRUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mlruns")


@pytest.fixture(autouse=True)
def _no_artifacts_in_the_repo(request):
    """Fail the test that makes ``mlruns/`` appear in the repository.

    MLflow's SQLite stores put artifacts under ``./mlruns`` of the working
    directory unless an experiment names its own ``artifact_location``: every
    test must keep its store and artifacts under ``tmp_path`` (chdir there, as
    ``tracking_uri`` does, or give the experiment an artifact location).
    """
    existed = os.path.exists(_REPO_MLRUNS)
    yield
    if not existed and os.path.exists(_REPO_MLRUNS):
        pytest.fail(f"{request.node.nodeid} wrote MLflow artifacts into {_REPO_MLRUNS}; keep them under tmp_path")
