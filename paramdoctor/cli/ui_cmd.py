"""``paramdoctor ui [--port N] [--host H] [-e NAME]``: the MLflow UI on the store paramdoctor uses.

The store is the one ``train`` and ``diagnose`` use: ``MLFLOW_TRACKING_URI``
when set, else MLflow's default (``sqlite:///mlflow.db`` in this directory).

- A tracking server (``http://``, ``https://``) already serves the UI: its
  address is printed, with the experiment's page, and nothing is started.
- Any other store (a SQLite file, a database URI, a file store) gets
  ``mlflow server`` on it, on 127.0.0.1:5000 unless told otherwise. A SQLite
  store that does not exist yet is created whole first
  (:func:`paramdoctor.tracking.store.prepare_store`). The address is printed
  once the server answers; it serves until Ctrl-C (exit 130) or SIGTERM.
  MLflow's background job runner (GenAI scorers and issue detection, several
  extra processes) stays off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is
  set; the server's own log is shown with ``--verbose``.

Where the UI lands. MLflow 3's UI has two modes, "GenAI" and "Model
training", switched at the top of its sidebar. paramdoctor tags the
experiments it writes runs into with ``mlflow.experimentKind`` =
``custom_model_development`` (the tag MLflow's UI writes when a user picks
"Machine learning" as an experiment's kind; see
:mod:`paramdoctor.tracking.run`), but MLflow 3.17's UI picks the mode from the
switch, remembered per browser and "GenAI" until changed, not from the tag.
So every link paramdoctor prints carries ``?workflowType=machine_learning``,
which opens the page in the model-training view whatever the switch says.

Run links. ``paramdoctor train`` prints the URL of the new run's page when a
UI is known: ``PARAMDOCTOR_UI_URL`` (the UI's base address, e.g.
``http://127.0.0.1:5000`` while ``paramdoctor ui`` runs, or a proxy in front
of a team's server), else the tracking server's own address.

Exit codes: 0 the server's address printed (tracking server) or the UI
stopped on its own with code 0, 1 the UI stopped with an error while
serving, 2 bad input (a port in use, a store MLflow cannot open), 130
interrupted.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

import typer

from paramdoctor.errors import InputError

if TYPE_CHECKING:
    import subprocess

# socket, subprocess, threading and urllib are imported where used: `paramdoctor --help` imports every command module

UI_URL_ENV = "PARAMDOCTOR_UI_URL"
ML_VIEW_QUERY = "workflowType=machine_learning"  # MLflow 3's "Model training" view, whatever the browser's switch says
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
STOP_GRACE_S = 10.0

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ML_VIEW_QUERY",
    "UI_URL_ENV",
    "experiment_url",
    "register",
    "run_url",
    "ui_base_url",
]


def register(app: typer.Typer) -> None:
    app.command(
        "ui",
        help=(
            "Start the MLflow UI on the store paramdoctor uses (MLFLOW_TRACKING_URI, else ./mlflow.db) and print its "
            "address; with a tracking server set, print the server's address instead. Ctrl-C stops it."
        ),
    )(ui)


# --- addresses (also used by `paramdoctor train` to print a run's page) -------------------


def is_server_uri(uri: str | None) -> bool:
    return bool(uri) and uri.lower().startswith(("http://", "https://"))


def ui_base_url(tracking_uri: str | None) -> str | None:
    """The UI's base address: ``$PARAMDOCTOR_UI_URL``, else an http(s) tracking URI; None when no UI is known.

    Raises :class:`InputError` (one line) for a ``PARAMDOCTOR_UI_URL`` that is not an http(s) address.
    """
    configured = os.environ.get(UI_URL_ENV, "").strip()
    if configured:
        if not is_server_uri(configured):
            raise InputError(
                f"{UI_URL_ENV}={configured!r} is not an http(s) address: set it to the MLflow UI's base URL, "
                f"e.g. http://{DEFAULT_HOST}:{DEFAULT_PORT}"
            )
        return _base(configured)
    return _base(tracking_uri) if is_server_uri(tracking_uri) else None


def experiment_url(base: str, experiment_id: str) -> str:
    """An experiment's runs, in MLflow's model-training view."""
    return f"{_base(base)}/#/experiments/{experiment_id}?{ML_VIEW_QUERY}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page, in MLflow's model-training view."""
    return f"{_base(base)}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW_QUERY}"


def _base(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/")


def _http_host(host: str) -> str:
    """The host to connect to and to print: a wildcard bind is reached on loopback; IPv6 in brackets."""
    if host in ("", "0.0.0.0", "::"):
        host = DEFAULT_HOST
    return f"[{host}]" if ":" in host else host


# --- the command ------------------------------------------------------------------------------


def ui(
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=1, max=65535, help="Port to serve the UI on."),
    host: str = typer.Option(
        DEFAULT_HOST, "--host", metavar="HOST",
        help="Interface to bind: 127.0.0.1 (this machine only) or 0.0.0.0 (all).",
    ),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", metavar="NAME", help="Experiment whose page to print (default: paramdoctor)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the MLflow server's own log."),
) -> int:
    from rich.console import Console
    from rich.markup import escape

    from paramdoctor.tracking.run import DEFAULT_EXPERIMENT, resolve_tracking_uri

    console = Console()
    experiment = experiment or DEFAULT_EXPERIMENT
    uri = resolve_tracking_uri()
    if is_server_uri(uri):
        base = ui_base_url(uri) or _base(uri)
        console.print(f"MLflow UI (the tracking server's, nothing started): [bold]{escape(base)}[/]", soft_wrap=True)
        experiment_id = _experiment_id(uri, experiment, quick=True)
        if experiment_id is not None:
            _print_experiment(console, experiment, experiment_url(base, experiment_id))
        return 0
    if uri.lower().startswith("databricks"):
        raise InputError(
            f"MLFLOW_TRACKING_URI is {uri!r}: its UI is the Databricks workspace; "
            "paramdoctor ui serves local stores and names tracking servers"
        )

    if not _port_free(host, port):
        raise InputError(f"port {port} on {host} is in use (another MLflow UI?): choose another with --port")
    from paramdoctor.tracking.store import prepare_store

    prepare_store(uri)  # a missing SQLite store is made whole here, not half-made by the server
    base = f"http://{_http_host(host)}:{port}"
    server = _Server(uri, host, port, verbose=verbose)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server too, like Ctrl-C
    try:
        server.start()
        experiment_id = _experiment_id(uri, experiment, quick=False)  # read from the store while the server starts
        server.wait_until_serving(base)
        console.print(f"MLflow UI on {escape(uri)}: [bold]{escape(base)}[/]", soft_wrap=True)
        if host in ("0.0.0.0", "::"):
            console.print(f"[dim](listening on all interfaces, {escape(host)})[/]")
        if experiment_id is not None:
            _print_experiment(console, experiment, experiment_url(base, experiment_id))
        console.print(
            f"[dim]Ctrl-C stops it. For `paramdoctor train` to print each run's page here: "
            f"export {UI_URL_ENV}={escape(base)}[/]",
            soft_wrap=True,
        )
        code = server.wait()
    except KeyboardInterrupt:
        server.stop()
        console.print("[yellow]MLflow UI stopped[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    if code != 0:
        console.print(
            f"[red]the MLflow UI stopped with exit code {code}[/]: {escape(server.last_line())}", soft_wrap=True
        )
        return 1
    return 0


def _print_experiment(console, name: str, url: str) -> None:
    from rich.markup import escape

    console.print(f"{escape(name)} runs: [bold]{escape(url)}[/]", soft_wrap=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on.

    With SO_REUSEADDR, as the server sets it: a socket that is closing does not count as in use.
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                return False
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host)") from None
    return True


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    """MLflow's HTTP client without its minutes of retries: a hint is not worth waiting for."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiment_id(uri: str, name: str, *, quick: bool) -> str | None:
    """The id of experiment ``name`` in the store, or None (missing, deleted, unreachable: the page is a hint)."""
    from mlflow.tracking import MlflowClient

    try:
        with _quick_http() if quick else contextlib.nullcontext():
            found = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    except Exception:  # noqa: BLE001 - a hint only
        return None
    if found is None or found.lifecycle_stage == "deleted":
        return None
    return found.experiment_id


class _Server:
    """``mlflow server`` as a child process in its own session, so that stopping it stops its workers too."""

    def __init__(self, uri: str, host: str, port: int, *, verbose: bool) -> None:
        self.command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1",
        ]
        self.verbose = verbose
        self.proc: subprocess.Popen[str] | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=40)

    def start(self) -> None:
        import subprocess
        import threading

        env = dict(os.environ)
        env.setdefault(JOB_EXECUTION_ENV, "false")
        try:
            self.proc = subprocess.Popen(
                self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", start_new_session=True,
            )
        except OSError as exc:
            raise InputError(f"cannot start mlflow server ({exc}): is MLflow installed in {sys.prefix}?") from None
        threading.Thread(target=self._read, name="mlflow-server-log", daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip()
            if line:
                self.lines.append(line)
                if self.verbose:
                    print(line, file=sys.stderr, flush=True)

    def last_line(self) -> str:
        """The server's last words worth reading: an error line if any, else its last line."""
        lines = list(self.lines)
        for line in reversed(lines):
            if any(word in line for word in ("Error", "error", "Exception", "already in use")):
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "(no output)"

    def wait_until_serving(self, base: str) -> None:
        """Return once ``/health`` answers; raise InputError when the server exits first."""
        import urllib.error
        import urllib.request

        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                time.sleep(0.2)  # let the reader take the last lines
                raise InputError(f"mlflow server exited with code {code} before serving: {self.last_line()}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after a grace period; idempotent."""
        import subprocess

        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        killpg = getattr(os, "killpg", None)
        try:
            if killpg is not None:
                killpg(proc.pid, signal.SIGTERM)
            else:  # pragma: no cover - Windows
                proc.terminate()
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            if killpg is not None:
                killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover
                proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
