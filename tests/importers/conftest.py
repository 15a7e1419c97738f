"""A real SQLite MLflow store per test, copied from one migrated template.

Creating an MLflow SQLite database runs its migrations (seconds on a busy
machine); copying a migrated file is instant and every test still gets its
own store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_store_template(tmp_path_factory) -> Path:
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("importers-mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store_uri(tmp_path, monkeypatch, migrated_store_template) -> str:
    """A fresh migrated SQLite store in ``tmp_path`` (also the working directory), exported as MLFLOW_TRACKING_URI."""
    shutil.copyfile(migrated_store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
