"""A real SQLite MLflow store per test, copied from one migrated template.

Creating an MLflow SQLite database runs its migrations (~2 s); copying a
migrated file is instant, and every test still gets its own store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, migrated_mlflow_db) -> str:
    """A fresh SQLite store in ``tmp_path`` (also the working directory), exported as MLFLOW_TRACKING_URI."""
    shutil.copyfile(migrated_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def client(mlflow_store) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_store)
