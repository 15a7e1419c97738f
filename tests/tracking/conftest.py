"""Recorder tests: a fresh migrated SQLite store per test (tests/conftest.py) and a client on it."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture
def mlflow_store(migrated_store_uri) -> str:
    return migrated_store_uri


@pytest.fixture
def client(mlflow_store) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_store)
