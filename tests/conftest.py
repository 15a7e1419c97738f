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


@pytest.fixture(scope="module")
def module_store(tmp_path_factory, migrated_mlflow_db):
    """One SQLite MLflow store (a copy of the migrated template) for a whole test module, as its
    MLFLOW_TRACKING_URI and working directory: an MlflowClient on it."""
    import shutil

    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    shutil.copyfile(migrated_mlflow_db, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        yield MlflowClient(tracking_uri=uri)
