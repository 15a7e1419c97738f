"""A local SQLite MLflow store that is either absent or complete.

MLflow creates ``mlflow.db`` in place: it makes the file, then runs some
fifty schema migrations in it, a few seconds of DDL that SQLite does not roll
back. A Ctrl-C in those seconds, or two processes creating the same store at
once, leaves a file at some half-way revision (``table _alembic_tmp_... already
exists``, ``duplicate column name``), and every later command fails on it.

:func:`prepare_store` is called before any client is made for a local store:

- a store that does not exist yet is created and migrated at a temporary path
  in the same directory and renamed into place (``os.replace``), so the real
  path never holds a half-made store, under an inter-process lock
  (``fcntl.flock`` on ``<db>.lock``, a small file left next to the store) so
  concurrent processes make it once;
- a store that holds no runs and is not at MLflow's current revision (a
  creation that was interrupted before this module existed, or by a plain
  ``mlflow`` command) is created afresh the same way: nothing is lost;
- a store with runs that was left with ``_alembic_tmp_*`` tables by an
  interrupted migration is repaired: the leftover copies are dropped (only
  where the original table is still there) and MLflow's migration is run
  again; when that is impossible the error is one line naming the file and
  the fix.

A healthy store costs one read of its ``alembic_version`` and takes no lock.
Stores that are not local SQLite files (servers, PostgreSQL) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from paramdoctor.durable import fsync_directory, fsync_path
from paramdoctor.errors import InputError
from paramdoctor.tracking.values import one_line

try:  # POSIX; elsewhere stores are made without the inter-process lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_TMP_PREFIX = "_alembic_tmp_"
# tables whose rows are a user's work: a store with any of them is repaired, never replaced
_DATA_TABLES = ("runs", "registered_models", "model_versions", "trace_info", "logged_models", "evaluation_datasets")


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (query string dropped); None for anything else or ``:memory:``."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def prepare_store(uri: str, *, create: bool = True) -> None:
    """Make the local SQLite store behind ``uri`` usable: created whole, or repaired.

    ``create=False`` leaves a missing store missing (readers must not create
    one) but still repairs a broken one. Raises :class:`InputError` (one
    line) for a store that cannot be made or repaired.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    state = store_state(path)
    if state == "healthy" or (state == "missing" and not create):
        return
    path = path.absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the MLflow store {path}: {one_line(exc)} (check MLFLOW_TRACKING_URI)") from exc
    with _locked(path):
        state = store_state(path)  # another process may have made or repaired it meanwhile
        if state == "healthy" or (state == "missing" and not create):
            return
        _remove_leftover_temporaries(path)
        if state in ("missing", "replaceable"):
            _create(path)
        else:
            _repair(path)


# --- what the file holds ------------------------------------------------------------


@lru_cache(maxsize=1)
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def store_state(path: Path) -> str:
    """missing | healthy | replaceable (broken or empty, holds no runs) | broken (holds runs)."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        raise InputError(f"the MLflow store {path} is a directory, not an SQLite file (check MLFLOW_TRACKING_URI)")
    if path.stat().st_size == 0:
        return "replaceable"
    try:
        with contextlib.closing(_connect(path)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = None
            if "alembic_version" in tables:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                version = row[0] if row else None
            leftovers = any(t.startswith(_TMP_PREFIX) for t in tables)
            if version == _head_revision() and not leftovers:
                return "healthy"
            return "broken" if _holds_data(conn, tables) else "replaceable"
    except sqlite3.DatabaseError as exc:
        raise InputError(
            f"the MLflow store {path} is not a readable SQLite database ({one_line(exc)}): "
            "move it away or point MLFLOW_TRACKING_URI at another store"
        ) from exc


def _connect(path: Path) -> sqlite3.Connection:
    """A connection that never creates the file: read-write (rolls back a hot journal), else read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn
    except sqlite3.OperationalError:  # a store this user may only read
        conn.close()
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _holds_data(conn: sqlite3.Connection, tables: set[str]) -> bool:
    for table in _DATA_TABLES:
        if table in tables and conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
            return True
    if "experiments" in tables:
        return conn.execute("SELECT 1 FROM experiments WHERE experiment_id != 0 LIMIT 1").fetchone() is not None
    return False


# --- making and mending ---------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _temporaries(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.creating-*"))


def _remove_leftover_temporaries(path: Path) -> None:
    """Half-made stores of processes that died while creating (we hold the lock: nobody else is)."""
    for tmp in _temporaries(path):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _create(path: Path) -> None:
    """Create and migrate the store beside ``path``, then rename it into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
    tmp_uri = f"sqlite:///{tmp}"
    try:
        # exactly the store MLflow would make at `path` (tables, Default experiment, artifact root)
        store = _get_sqlalchemy_store(tmp_uri, None)
        store.engine.dispose()  # closes the file: no journal left beside it
        SqlAlchemyStore._engine_map.pop(tmp_uri, None)
        fsync_path(tmp)
        for stale in ("-journal", "-wal", "-shm"):  # a dead process's journal must not be "rolled back" into the new file
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + stale).unlink()
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot create the MLflow store {path}: {one_line(exc)} (check MLFLOW_TRACKING_URI)") from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _repair(path: Path) -> None:
    """A store with runs, left half-migrated: drop the migration's leftover copies and migrate again."""
    fix = (
        f"back up {path}, then restore a copy made before the interruption, "
        "or move it away to start a new store"
    )
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        leftovers = sorted(t for t in tables if t.startswith(_TMP_PREFIX))
        if not leftovers:
            return  # an older schema, not an interrupted one: MLflow's own message says how to upgrade
        for tmp in leftovers:
            original = tmp[len(_TMP_PREFIX) :]
            if original not in tables:
                raise InputError(
                    f"the MLflow store {path} was left half-migrated: table {original} exists only as {tmp}; {fix}"
                )
        for tmp in leftovers:
            conn.execute(f'DROP TABLE "{tmp}"')
        conn.commit()
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    try:
        _upgrade_db(engine)
    except Exception as exc:
        raise InputError(
            f"the MLflow store {path} was left half-migrated and MLflow's migration fails on it ({one_line(exc, 200)}); {fix}"
        ) from exc
    finally:
        engine.dispose()
