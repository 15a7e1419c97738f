"""Integration fixtures: a team's tracking server, for real.

``team_server`` is a throwaway PostgreSQL cluster (Debian's ``postgresql``
package: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
loopback port, as the ``postgres`` user when the tests run as root) with a
real ``mlflow server --backend-store-uri postgresql://...
--artifacts-destination DIR`` in front of it, up once ``/health`` answers.
Everything is stopped and deleted after the module. ``benchmarks/pg_server.py``
does the work (and starts the same thing by hand).

Where PostgreSQL or its Python driver is not installed, the tests that need
it are skipped with the command that installs it (``apt-get install
postgresql``; ``pip install 'psycopg[binary]'``). Installed but failing to
start is a failure, never a skip.
"""

from __future__ import annotations

import pytest

from benchmarks import pg_server


@pytest.fixture(scope="module")
def team_server():
    reason = pg_server.unavailable()
    if reason:
        pytest.skip(f"no PostgreSQL-backed MLflow server here: {reason}")
    with pg_server.team_server() as team:
        yield team
