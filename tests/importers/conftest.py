"""The importers' tests name their store ``store_uri``: the shared migrated store of tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def store_uri(migrated_store_uri) -> str:
    return migrated_store_uri
