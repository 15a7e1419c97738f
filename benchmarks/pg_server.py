"""A throwaway team tracking server: a PostgreSQL cluster and a real ``mlflow server`` on it.

For manual use (timings against a PostgreSQL-backed server, trying a command
the way a team runs it) and for the integration tests in
``tests/integration/``, which start it through :func:`team_server`::

    .venv/bin/python benchmarks/pg_server.py                # prints the URIs, serves until Ctrl-C
    .venv/bin/python benchmarks/pg_server.py --workers 4    # more uvicorn workers (MLflow's default is 4)

It prints ``export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT`` and the
database URL an Optuna ``--storage`` can use, then waits; Ctrl-C (or SIGTERM)
stops the server and the cluster and deletes their folder.

What it does, with nothing left behind:

1. ``initdb`` a new cluster into a temporary folder (trust authentication on
   loopback only, superuser ``paramdoctor``), then ``pg_ctl start`` it on a
   free loopback port with its socket in that folder. The cluster is
   throwaway, so it runs with ``fsync=off``: a crash loses it, which is the
   point. PostgreSQL refuses to run as root: as root, the binaries run as the
   ``postgres`` user (``runuser -u postgres --``) and the folder is theirs.
2. ``createdb`` the databases: ``mlflow`` for the tracking server, ``optuna``
   for studies.
3. ``mlflow server --backend-store-uri postgresql://... --artifacts-destination
   DIR --host 127.0.0.1 --port PORT``: artifacts are proxied through the
   server (``mlflow-artifacts:/``), as on a team's server, so clients never
   see the server's disk. It waits for ``/health`` (the first start runs
   MLflow's schema migrations). MLflow's job runner (GenAI jobs, a handful of
   worker processes) is turned off: nothing here uses it.

The binaries are found on ``$PARAMDOCTOR_PG_BIN``, else Debian's
``/usr/lib/postgresql/<newest>/bin``, else ``PATH``. :func:`unavailable`
says, in one line, why none can start here (and how to install it:
``apt-get install postgresql``, the Python driver ``pip install
'psycopg[binary]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENV_PG_BIN = "PARAMDOCTOR_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "paramdoctor"
INSTALL_HINT = "install it with `apt-get install postgresql` (Debian/Ubuntu) or point $PARAMDOCTOR_PG_BIN at its bin folder"
DRIVER_HINT = "install the driver into the venv: `.venv/bin/pip install 'psycopg[binary]'`"

__all__ = ["MlflowServer", "PostgresCluster", "TeamServer", "database_scheme", "find_pg_bin", "team_server", "unavailable"]


# --- what is there ------------------------------------------------------------------------


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: $PARAMDOCTOR_PG_BIN, Debian's newest version, or PATH."""
    env = os.environ.get(ENV_PG_BIN)
    if env:
        return Path(env) if (Path(env) / "initdb").is_file() else None
    if DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_PG_ROOT.iterdir() if (p / "bin" / "initdb").is_file()),
            key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
        )
        if versions:
            return versions[-1] / "bin"
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def database_scheme() -> str | None:
    """The URL scheme SQLAlchemy can open PostgreSQL with here: ``postgresql`` when its default driver is installed.

    SQLAlchemy 2.1 reads a plain ``postgresql://`` URL with psycopg 3 (2.0
    and older with psycopg2); with only the other driver installed, the
    scheme names it (``postgresql+psycopg2``). None when neither is.
    """
    from sqlalchemy.engine import make_url

    for scheme in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        try:
            make_url(f"{scheme}://").get_dialect().import_dbapi()
        except ImportError:
            continue
        return scheme
    return None


def _run_as() -> str | None:
    """The user the PostgreSQL binaries run as: ``postgres`` when we are root (it refuses root), else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def unavailable() -> str | None:
    """Why a throwaway server cannot start here (one line, with the fix), or None when it can."""
    if find_pg_bin() is None:
        return f"PostgreSQL's server binaries (initdb, pg_ctl) are not installed: {INSTALL_HINT}"
    if database_scheme() is None:
        return f"no PostgreSQL driver for SQLAlchemy in this Python: {DRIVER_HINT}"
    user = _run_as()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root, but there is no {user!r} user to run PostgreSQL as: {INSTALL_HINT}"
        if shutil.which("runuser") is None:
            return "running as root, but `runuser` (util-linux) is missing to run PostgreSQL as 'postgres'"
    return None


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- PostgreSQL -----------------------------------------------------------------------------


@dataclass
class PostgresCluster:
    """One throwaway cluster in ``root`` (a folder this object makes and deletes), on ``127.0.0.1:port``."""

    root: Path
    port: int = 0
    bin_dir: Path | None = None
    scheme: str = "postgresql"
    started: bool = False
    _user: str | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of ``database`` (trust authentication: no password)."""
        return f"{self.scheme}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        exe = str((self.bin_dir or Path()) / tool)
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        return [*prefix, exe, *args]

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}\n"
                f"server log:\n{_tail(self.log)}"
            )

    def start(self) -> "PostgresCluster":
        self.bin_dir = self.bin_dir or find_pg_bin()
        if self.bin_dir is None:
            raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        self._user = _run_as()
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        self.port = self.port or free_port()
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--locale=C")
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o", options, "start")
        self.started = True
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self.started = False
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)


# --- the MLflow server ----------------------------------------------------------------------


@dataclass
class MlflowServer:
    """``mlflow server`` on ``backend_uri`` with proxied artifacts in ``artifacts``, on ``127.0.0.1:port``."""

    backend_uri: str
    artifacts: Path
    log: Path
    port: int = 0
    workers: int = 1
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        mlflow = Path(sys.executable).with_name("mlflow")
        head = [str(mlflow)] if mlflow.is_file() else [sys.executable, "-m", "mlflow"]
        return [*head, "server", "--backend-store-uri", self.backend_uri, "--artifacts-destination", str(self.artifacts),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]

    def start(self, timeout_s: float = 300.0) -> "MlflowServer":
        self.port = self.port or free_port()
        self.artifacts.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # GenAI job runners: a handful of idle processes
        with open(self.log, "ab") as log:
            # its own session: stop() ends the server and the uvicorn workers it spawns, and nothing else
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.artifacts.parent, start_new_session=True)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode} before it answered:\n{_tail(self.log)}")
            try:
                with opener.open(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer {self.uri}/health within {timeout_s:.0f} s:\n{_tail(self.log)}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn workers: the group it leads
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


# --- both -------------------------------------------------------------------------------------


@dataclass
class TeamServer:
    """What :func:`team_server` yields."""

    cluster: PostgresCluster
    server: MlflowServer
    root: Path

    @property
    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` for the clients."""
        return self.server.uri

    @property
    def backend_uri(self) -> str:
        """The tracking server's own database (clients never use it)."""
        return self.server.backend_uri

    def database(self, name: str) -> str:
        """Create another database in the cluster (an Optuna storage, say); returns its URL."""
        return self.cluster.create_database(name)


@contextlib.contextmanager
def team_server(*, workers: int = 1, root: str | os.PathLike[str] | None = None, timeout_s: float = 300.0) -> Iterator[TeamServer]:
    """Start a throwaway cluster and an MLflow server on it; stop both and delete their folder on the way out.

    Raises RuntimeError (with the log's last lines) when either does not start;
    call :func:`unavailable` first to tell "not installed" from "broken".
    """
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    # a short path of its own under /tmp: the socket path must stay under ~100 bytes, and the
    # postgres user must be able to reach it (pytest's tmp folders are private to this user)
    folder = Path(tempfile.mkdtemp(prefix="pd-pg-", dir=root))
    folder.chmod(0o711)  # the postgres user may pass through to its own folder, not list ours
    cluster = PostgresCluster(folder / "pg", scheme=database_scheme() or "postgresql")
    cluster.root.mkdir()
    server: MlflowServer | None = None
    try:
        cluster.start()
        backend = cluster.create_database("mlflow")
        server = MlflowServer(backend, folder / "artifacts", folder / "mlflow-server.log", workers=workers)
        server.start(timeout_s=timeout_s)
        yield TeamServer(cluster, server, folder)
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the MLflow server (default 1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for /health (default 300)")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    stop = {"now": False}

    def _stop(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    started = time.monotonic()
    try:
        with team_server(workers=args.workers, timeout_s=args.timeout) as team:
            optuna_url = team.database("optuna")
            print(f"started in {time.monotonic() - started:.1f} s (PostgreSQL {team.cluster.bin_dir}, folder {team.root})")
            print(f"export MLFLOW_TRACKING_URI={team.tracking_uri}")
            print(f"tracking server database: {team.backend_uri}")
            print(f"optuna storage:           --storage {optuna_url}")
            print(f"server log:               {team.server.log}")
            print("Ctrl-C stops the server and the cluster and deletes the folder", flush=True)
            while not stop["now"]:
                if team.server.process is None or team.server.process.poll() is not None:
                    print(f"error: the mlflow server exited:\n{_tail(team.server.log)}", file=sys.stderr)
                    return 1
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
