"""Helpers the benchmark scripts share: the machine line, medians, the reproduce line.

Benchmarks are scripts, not library code: they print. Each one states the
machine it ran on and the exact command that reproduces its figures, because a
number without both cannot be checked.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "REPO_ROOT",
    "cpu_model",
    "ensure_repo_on_path",
    "machine_line",
    "median",
    "reproduce_line",
    "scratch_store",
    "set_threads",
]


def ensure_repo_on_path() -> None:
    """Let ``python benchmarks/x.py`` import ``paramdoctor`` from the checkout (no install needed)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(device: str | None = None) -> str:
    """One line: CPU, cores, load, Python, torch and its threads, the device used."""
    import torch

    try:
        load = "load %.2f" % os.getloadavg()[0]
    except OSError:
        load = "load n/a"
    parts = [
        f"cpu: {cpu_model()}",
        f"{os.cpu_count()} cores",
        load,
        f"python {platform.python_version()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
    ]
    if device is not None:
        name = device
        if device.startswith("cuda") and torch.cuda.is_available():
            name = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        parts.append(f"device {name}")
    return "machine: " + ", ".join(parts)


@contextlib.contextmanager
def scratch_store(keep: Path | None = None) -> Iterator[Path]:
    """Train into a scratch MLflow store: a SQLite file and ./mlruns in ``keep`` or a temporary folder (removed after).

    Sets ``MLFLOW_TRACKING_URI`` and works inside the folder, because a SQLite
    store keeps its artifacts under the working directory's ``mlruns``.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not "Creating initial MLflow database tables..."
    store = keep.resolve() if keep is not None else Path(tempfile.mkdtemp(prefix="pd-bench-"))
    store.mkdir(parents=True, exist_ok=True)
    old_uri, cwd = os.environ.get("MLFLOW_TRACKING_URI"), Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.chdir(store)
    try:
        yield store
    finally:
        os.chdir(cwd)
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
        if keep is None:
            shutil.rmtree(store, ignore_errors=True)


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads for a steadier benchmark; 0 keeps torch's default."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def reproduce_line(script: str, argv: Sequence[str]) -> str:
    """``cd <repo> && .venv/bin/python benchmarks/<script> <args>``, quoted for a shell."""
    python = os.path.relpath(sys.executable, REPO_ROOT) if sys.executable.startswith(str(REPO_ROOT)) else sys.executable
    args = " ".join(shlex.quote(a) for a in argv)
    return f"reproduce: cd {shlex.quote(str(REPO_ROOT))} && {python} benchmarks/{script} {args}".rstrip()
