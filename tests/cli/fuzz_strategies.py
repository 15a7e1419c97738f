"""Hostile input for the whole CLI, and the contract every run of it must keep.

Shared by ``tests/cli/test_fuzz.py`` (small, derandomized budgets in CI) and
``benchmarks/fuzz_counts.py`` (larger budgets, one table per family). A
strategy draws a :class:`Case`: the argv, the files to write into a fresh
working directory, the MLflow store to start from, and the exit codes the
command documents. :func:`run_case` runs it in-process through
``paramdoctor.cli.app.main`` with ``MLFLOW_TRACKING_URI`` pointing at a
SQLite store in that directory, and :func:`violations` names every part of
the contract the run broke:

* ``main()`` returns a documented exit code (train 0/1/2, diagnose 0/1/2/3,
  rules 0/1/2, import 0/2); it never raises;
* exit 2 prints exactly one non-blank line on stderr: ``error: ...`` naming
  the offending argument, key, file or rule (bare ``paramdoctor`` prints its
  help instead, as ``git`` does);
* "Traceback" appears nowhere in stdout or stderr;
* exit 2 of ``train`` or ``import`` adds no run to the store,
  ``train --dry-run`` creates neither a run nor a store, and ``diagnose`` and
  ``rules`` never add one.

Every path the strategies put on a command line is relative to the working
directory (random text never holds ``/``, ``\\`` or ``~``), so a command that
writes (``diagnose --write``, ``import``) can only write there. Training is
kept cheap: digits, 64 samples, batch 32, one epoch, small_cnn on the CPU (or
a few 8x8 images, or CIFAR files of two images a batch).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RUNS = REPO / "sample_runs"
RULES_DIR = REPO / "rules"

FAMILIES = ("argv", "config", "override", "rules", "runfile", "weights", "data", "alias")

#: Exit codes each command documents (README, "Commands").
EXIT_CODES = {
    "train": frozenset({0, 1, 2}),
    "diagnose": frozenset({0, 1, 2, 3}),
    "rules": frozenset({0, 1, 2}),
    "import": frozenset({0, 2}),
    None: frozenset({0, 2}),
}

#: Fragments of Python's own exception messages: an error line holding one leaked an exception instead of naming the problem.
INTERNAL_SMELLS = (
    "'NoneType' object",
    "object has no attribute",
    "unhashable type",
    "is not subscriptable",
    "unexpected keyword argument",
    "referenced before assignment",
    "not supported between instances",
    "object is not iterable",
    "object is not callable",
    "required positional argument",
    "Traceback",
)

#: Overrides that keep a real training run to about a second on one core.
CHEAP_TRAINING = (
    "data.dataset=digits",
    "data.subset=64",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "model.name=small_cnn",
    "data.image_size=null",
    "data.num_workers=0",
    "trainer.device=cpu",
    "-q",
)


# --- a case and its outcome ----------------------------------------------------------


@dataclass
class Case:
    """One command line with the files it needs."""

    family: str
    argv: list[str]
    files: dict[str, bytes | None] = field(default_factory=dict)  # relative path -> bytes; None makes a directory
    store: str = "none"  # "none": no store yet, "empty": a migrated store, "run": one with an imported run
    needles: tuple[str, ...] = ()  # an exit-2 error line names one of these (case-insensitive); () skips the check
    dry_run: bool = False  # a train --dry-run: must create no store and no run
    copies: dict[str, str] = field(default_factory=dict)  # relative path -> file or folder of the repository to copy

    @property
    def command(self) -> str | None:
        first = self.argv[0] if self.argv else None
        return first if first in EXIT_CODES else None

    @property
    def allowed(self) -> frozenset[int]:
        return EXIT_CODES[self.command]

    def repro(self, limit: int = 400) -> str:
        """The argv and the files, short enough for a report."""
        parts = [f"argv={_short(self.argv, limit)}"]
        for rel, content in sorted(self.files.items()):
            parts.append(f"{rel}=" + ("<dir>" if content is None else _short(content, limit)))
        for rel, src in sorted(self.copies.items()):
            parts.append(f"{rel}=<copy of {src}>")
        if self.store != "none":
            parts.append(f"store={self.store}")
        return "  ".join(parts)


@dataclass
class Outcome:
    case: Case
    code: int | None
    out: str
    err: str
    exception: str | None  # type and message of what escaped main(), with its last frame
    runs_before: int  # -1: no store file
    runs_after: int
    seconds: float
    timed_out: bool = False

    @property
    def violations(self) -> list[str]:
        return violations(self)


def _short(value: object, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit // 2]}...({len(text)} chars)...{text[-limit // 4:]}"


# --- the contract --------------------------------------------------------------------


def _error_line(lines: list[str]) -> str | None:
    """The one error line of an exit-2 stderr, or None when stderr is anything else (click's usage block included)."""
    if len(lines) == 1 and lines[0].startswith("error: "):
        return lines[0]
    return None


def _variants(needle: str) -> list[str]:
    """A needle as an error line may quote it: raw, repr-escaped, cut short."""
    needle = needle.strip()
    if not needle:
        return []
    short = needle[:24]
    escaped = repr(needle)[1:-1][:24]
    return [v.lower() for v in {short, escaped, needle.split("=", 1)[0][:24]} if v.strip()]


def violations(outcome: Outcome) -> list[str]:
    """Which parts of the contract ``outcome`` broke (empty: it kept all of them)."""
    case, found = outcome.case, []
    if outcome.timed_out:
        return [f"did not finish in {outcome.seconds:.0f} s"]
    if outcome.exception is not None:
        found.append(f"main() raised {outcome.exception}")
    elif outcome.code not in case.allowed:
        found.append(f"exit {outcome.code} (documented: {sorted(case.allowed)})")
    if "Traceback" in outcome.out or "Traceback" in outcome.err:
        where = "stderr" if "Traceback" in outcome.err else "stdout"
        found.append(f"traceback on {where}: {_last_exception_line(outcome.out + outcome.err)}")
    bare_help = not case.argv and "Usage:" in outcome.err + outcome.out
    if outcome.code == 2 and outcome.exception is None and not bare_help:
        lines = [line for line in re.split(r"\r\n|\n|\r", outcome.err) if line.strip()]
        line = _error_line(lines)
        if line is None:
            found.append(f"exit 2 with {len(lines)} stderr lines, not one error line: {_short(lines[:4], 300)}")
        else:
            smell = next((s for s in INTERNAL_SMELLS if s in line), None)
            if smell:
                found.append(f"error line leaks a Python exception ({smell!r}): {_short(line, 300)}")
            needles = [v for n in case.needles for v in _variants(n)]
            if needles and not any(n in line.lower() for n in needles):
                found.append(f"error line names none of {_short(list(case.needles)[:6], 200)}: {_short(line, 300)}")
            quoted = sum(len(repr(a)) for a in case.argv)  # a message may quote every argument, escaped
            if len(line) > 2000 + 2 * quoted:
                found.append(f"error line is {len(line)} characters long")
    if case.dry_run:
        if outcome.runs_before == -1 and outcome.runs_after != -1:
            found.append("train --dry-run created an MLflow store")
        elif outcome.runs_after != outcome.runs_before:
            found.append(f"train --dry-run changed the run count {outcome.runs_before} -> {outcome.runs_after}")
    if outcome.code == 2 and case.command in ("train", "import"):
        if max(outcome.runs_after, 0) > max(outcome.runs_before, 0):
            found.append(f"exit 2 left {outcome.runs_after - max(outcome.runs_before, 0)} run(s) in the store")
    if case.command in ("diagnose", "rules") and max(outcome.runs_after, 0) != max(outcome.runs_before, 0):
        found.append(f"{case.command} changed the run count {outcome.runs_before} -> {outcome.runs_after}")
    return found


def _last_exception_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(" ")]
    tail = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit|Warning|Interrupt)\b", line)]
    return _short((tail or lines or [""])[-1], 240)


#: Violation kinds, by how a violation text starts: a failing test raises one exception class per kind.
VIOLATION_KINDS = (
    ("did not finish", "Hang"),
    ("main() raised", "UncaughtException"),
    ("exit ", "UndocumentedExitCode"),
    ("traceback on", "TracebackPrinted"),
    ("exit 2 with", "NotOneErrorLine"),
    ("error line leaks", "LeakedPythonError"),
    ("error line names none", "ErrorNamesNothing"),
    ("error line is", "ErrorLineTooLong"),
    ("train --dry-run", "DryRunLogged"),
    ("exit 2 left", "RunLeftBehind"),
    ("diagnose changed", "ReadingMadeARun"),
    ("rules changed", "ReadingMadeARun"),
)


def violation_kind(problem: str) -> str:
    """``UncaughtException``, ``NotOneErrorLine``, ...: the kind of one violation text."""
    best = max((p for p, _ in VIOLATION_KINDS if problem.startswith(p)), key=len, default=None)
    return dict(VIOLATION_KINDS)[best] if best else "ContractViolation"


def signature(problem: str) -> str:
    """A violation with the numbers, quotes and paths taken out: equal signatures are one bug."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", problem)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


# --- running a case --------------------------------------------------------------------


def count_runs(db: Path) -> int:
    """Runs in the SQLite store ``db``; -1 when there is no store file."""
    if not db.exists():
        return -1
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return 0  # created, not yet migrated


class StoreTemplates:
    """Migrated SQLite stores made once and copied per case: empty, and one holding an imported run."""

    RUN_NAME = "fuzz-run"

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self._paths: dict[str, Path] = {}

    def path(self, kind: str) -> Path:
        if kind not in self._paths:
            self._paths[kind] = self._make(kind)
        return self._paths[kind]

    def _make(self, kind: str) -> Path:
        from mlflow.tracking import MlflowClient

        where = self.base / f"store-{kind}"
        where.mkdir(parents=True, exist_ok=True)
        db = where / "mlflow.db"
        with working_dir(where):  # MLflow puts a SQLite store's artifacts under the working directory of its creation
            client = MlflowClient(tracking_uri=f"sqlite:///{db}")
            client.search_experiments()
            if kind == "run":
                from paramdoctor.importers import load_foreign
                from paramdoctor.importers.to_mlflow import log_record

                client.create_experiment("paramdoctor", artifact_location=(where / "mlruns").as_uri())
                source = next(iter(sorted((REPO / "tests" / "importers" / "fixtures").rglob("trainer_state.json"))))
                log_record(load_foreign(str(source)), experiment="paramdoctor", run_name=self.RUN_NAME, artifact=source,
                           client=client)
        return db


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """cwd = ``path`` and MLFLOW_TRACKING_URI = its ``mlflow.db``; both restored after."""
    old_cwd, old_uri = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(path)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(path).resolve()}/mlflow.db"
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri


def materialise(case: Case, workdir: Path, stores: StoreTemplates) -> None:
    """Write the case's files (and its store) into ``workdir``."""
    if case.store != "none":
        shutil.copyfile(stores.path(case.store), workdir / "mlflow.db")
    for rel, src in case.copies.items():
        target, origin = workdir / rel, REPO / src
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(origin, target)
    for rel, content in case.files.items():
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            target.mkdir(exist_ok=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            target.write_bytes(content)


@contextlib.contextmanager
def as_a_process_shows_warnings() -> Iterator[None]:
    """Warnings as ``python -m paramdoctor`` shows them: Python's default filters, printed on stderr.

    pytest records warnings instead of printing them, which would hide a
    warning that breaks the one-error-line contract of the real command.
    """
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = show
        yield


def call_main(argv: list[str]) -> tuple[int | None, str | None]:
    """``main(argv)``: its exit code, or (None, what escaped it)."""
    from paramdoctor.cli import app as app_module

    try:
        with as_a_process_shows_warnings():
            code = app_module.main(list(argv))
    except BaseException as exc:  # noqa: BLE001 - anything escaping main() is what this looks for
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, _Alarm):
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        return None, f"{type(exc).__module__}.{type(exc).__name__}: {_short(str(exc), 200)}{where}"
    return code, None


def run_case(
    case: Case,
    base: Path,
    stores: StoreTemplates,
    read_output: Callable[[], tuple[str, str]],
    *,
    timeout: float | None = 120.0,
) -> Outcome:
    """Run ``case`` in a fresh directory under ``base``; ``read_output`` drains what was printed since its last call.

    ``timeout`` (seconds, main thread only) interrupts a run that hangs, so one bad case cannot block a suite.
    """
    workdir = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    fired: list[bool] = []

    def alarm(signum: int, frame: object) -> None:
        fired.append(True)
        raise _Alarm(f"no answer in {timeout} s")

    try:
        materialise(case, workdir, stores)
        db = workdir / "mlflow.db"
        before = count_runs(db)
        read_output()
        guard = timeout is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGALRM, alarm) if guard else None
        t0 = time.perf_counter()
        try:
            if guard:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            with working_dir(workdir):
                code, exc = call_main(case.argv)
        finally:
            if guard:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - t0
        out, err = read_output()
        return Outcome(case, code, out, err, exc, before, count_runs(db), seconds, timed_out=bool(fired))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_case_in_subprocess(case: Case, base: Path, stores: StoreTemplates, *, timeout: float, memory_mb: int = 2048) -> Outcome:
    """Like :func:`run_case` in a child process with a wall-clock and memory limit: for input that may hang."""
    workdir = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    try:
        materialise(case, workdir, stores)
        db = workdir / "mlflow.db"
        before = count_runs(db)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        script = "import sys; from paramdoctor.cli.app import main; sys.exit(main(sys.argv[1:]))"

        def limit() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", script, *case.argv],
                cwd=workdir, env=env, capture_output=True, timeout=timeout, preexec_fn=limit,
            )
        except subprocess.TimeoutExpired as exc:
            return Outcome(case, None, _text(exc.stdout), _text(exc.stderr), None, before, count_runs(db),
                           time.perf_counter() - t0, timed_out=True)
        out, err = _text(done.stdout), _text(done.stderr)
        exc_text = None
        if done.returncode == 1 and "Traceback" in err:
            exc_text = _last_exception_line(err)
        return Outcome(case, done.returncode, out, err, exc_text, before, count_runs(db), time.perf_counter() - t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


class _Alarm(KeyboardInterrupt):
    """Raised by an alarm guard; escapes main() like Ctrl-C would."""


class FdCapture:
    """stdout and stderr captured at the file-descriptor level, for the benchmark (tests use pytest's capfd)."""

    def __enter__(self) -> "FdCapture":
        sys.stdout.flush()
        sys.stderr.flush()
        self._files = [tempfile.TemporaryFile(mode="w+b") for _ in range(2)]
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._files[0].fileno(), 1)
        os.dup2(self._files[1].fileno(), 2)
        self._py = (sys.stdout, sys.stderr)
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8", errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), encoding="utf-8", errors="backslashreplace", line_buffering=True)
        return self

    def read(self) -> tuple[str, str]:
        sys.stdout.flush()
        sys.stderr.flush()
        texts = []
        for fh in self._files:
            fh.seek(0)
            texts.append(fh.read().decode("utf-8", "replace"))
            fh.seek(0)
            fh.truncate()
        return texts[0], texts[1]

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout.close()
        sys.stderr.close()
        sys.stdout, sys.stderr = self._py
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        for fh in self._files:
            fh.close()


# --- building blocks ---------------------------------------------------------------------

_SAFE_CHARS = st.characters(blacklist_characters="/\\~", blacklist_categories=("Cs",))


def safe_text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Any text without path separators or ``~`` (NUL, control characters and unicode included)."""
    return st.text(_SAFE_CHARS, min_size=min_size, max_size=max_size)


#: File names: any text a file system takes (no separators, no NUL, not "." or "..").
file_names = st.text(st.characters(blacklist_characters="/\\~\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)


def _no_separators(text: str) -> str:
    return re.sub(r"[/\\~]", "_", text)


#: Undecodable bytes as a real argv would carry them (Python's surrogateescape).
surrogate_text = st.binary(min_size=1, max_size=6).map(lambda b: _no_separators(os.fsdecode(b)))
long_text = st.tuples(st.sampled_from("aZ9é.-=_ "), st.integers(500, 20_000)).map(lambda t: t[0] * t[1])

NUMBER_WORDS = [
    "0", "-0", "1", "-1", "2", "1.5", "-2.5", "1e-4", "1e999", "-1e999", "1e308", "5e-324", "nan", "NaN", ".nan",
    "inf", "-inf", ".inf", "Infinity", "99999999999999999999999", "-99999999999999999999999", "0x10", "0o7", "1_000",
    "١٢", "１", " 1", "1 ", "+1", "1e", "e1", ".", "", "true", "null", "~", "[]", "{}",
]

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-30, 1e30, -1.0, 1e9, 2**53 + 1.0]),
)
weird_ints = st.one_of(
    st.integers(-5, 100),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**400]),
)
scalars = st.one_of(
    st.none(), st.booleans(), weird_ints, weird_floats, safe_text(max_size=12),
    st.sampled_from(["", " ", "auto", "adamw", "sgd", "cosine", "digits", "small_cnn", "val/acc", "max", "1e-4", "null"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(safe_text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _known_keys() -> list[str]:
    try:
        from paramdoctor.config.loading import known_keys

        return sorted(known_keys())
    except Exception:  # noqa: BLE001 - a tree in flux: fall back to the documented keys
        return ["seed", "optimizer.lr", "optimizer.name", "data.batch_size", "trainer.max_epochs", "model.dropout"]


KNOWN_KEYS = _known_keys()
SECTIONS = sorted({k.split(".")[0] for k in KNOWN_KEYS if "." in k})


def _mutate_key(key: str, how: int) -> str:
    forms = [
        key, key.upper(), key + ".", "." + key, key.replace(".", ".."), key + ".x", key.replace(".", "_"),
        key[:-1], key + "s", key.replace("o", "0"), key.replace(".", "．"), key.split(".")[0], f" {key} ",
        key.replace("a", "а"),  # Cyrillic a
    ]
    return forms[how % len(forms)]


config_keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.tuples(st.sampled_from(KNOWN_KEYS), st.integers(0, 50)).map(lambda t: _mutate_key(*t)),
    st.sampled_from(SECTIONS),
    safe_text(max_size=12),
)

# --- family a: argv -----------------------------------------------------------------------

COMMAND_OPTIONS = {
    "train": (["--dry-run", "--quiet", "-q", "--help", "-h"], []),
    "diagnose": (
        ["--json", "--no-log", "--help"],
        ["--experiment", "-e", "--write", "--rules", "--set", "--run-index", "--map"],
    ),
    "rules": (["--json", "--markdown", "--help"], ["--rules", "--set", "--split"]),
    "import": (["--help"], ["--experiment", "-e", "--run-name", "--run-index", "--map"]),
}
BOGUS_OPTIONS = [
    "--bogus", "-x", "--", "-", "---", "--=", "--json=", "--json=1", "--dry-run=yes", "-qq", "-qx", "--Json",
    "--no-json", "--run_index", "--versio", "--version", "--help=1", "-e=", "--experiment==x", "--set=",
    "--rules=", "--map==", "--run-index=", "--run-index=-1", "--write=", "--dry", "--d", "-\x00", "--ünï",
]
ARGV_FILES = {
    "run.json": "sample_runs/diverged_sgd_lr10/run.json",
    "rulesdir/PD301.yaml": "rules/PD301.yaml",
    "log/metrics.csv": "sample_runs/real/lightning-csv-angu5martin-aqf/metrics.csv",
}
WORDS = [
    "x\x00y", "a" * 300, "." * 256, "\n", "run.json\x00", "-", "latest", "run.json", "rulesdir", "log", "log/metrics.csv", "nope", "PD301", "pd301", "val-loss-turns-up",
    "cfg.yaml", "paramdoctor", "fuzz-run", "calibration", "next.yaml", "sub/next.yaml", ".", "..", "", " ", "=",
    "optimizer.lr=3e-4", "optimizer.lr=", "=3", "a=b", "trainer.max_epochs=1", "val/loss=eval_loss", "val/loss=",
    "=eval_loss", "PD301.min_rise=0.2", "PD301.min_rise=nan", "PD301.min_rise=-1", "PD999.x=1", "PD301=1",
    "min_rise=1", "PD301.=1", "train", "diagnose", "rules", "import", "test", "mlflow.db",
    *NUMBER_WORDS,
]
argv_words = st.one_of(
    st.sampled_from(WORDS), safe_text(max_size=16), surrogate_text, long_text,
    st.sampled_from(BOGUS_OPTIONS),
)


@st.composite
def argv_cases(draw) -> Case:
    command = draw(st.sampled_from([*COMMAND_OPTIONS, "", "bogus", "Train", "diagnose ", "--help", "--version"]))
    flags, valued = COMMAND_OPTIONS.get(command, ([], []))
    token = st.one_of(
        st.sampled_from(flags) if flags else st.nothing(),
        st.tuples(st.sampled_from(valued), argv_words).map(list) if valued else st.nothing(),
        st.tuples(st.sampled_from(valued), argv_words).map(lambda t: [f"{t[0]}={t[1]}"]) if valued else st.nothing(),
        argv_words,
    )
    tokens: list[str] = draw(st.lists(argv_words, max_size=1))  # a positional first: RUN, PATH, CONFIG, CODE
    for item in draw(st.lists(token, max_size=7)):
        tokens.extend(item if isinstance(item, list) else [item])
    prefix = [command] if command else []
    if command == "train":
        prefix.append("--dry-run")  # before any `--`: a fuzzed train never trains the default 20 epochs
    return argv_case(prefix + tokens)


def argv_case(argv: list[str]) -> Case:
    """A command line run beside a small export, a rule folder, a log and a config (all relative paths)."""
    command = argv[0] if argv else None
    if command == "rules":  # `rules test` scores the whole corpus (seconds): tests/cli/test_rules_test.py covers it
        argv = [a if a != "test" else "tset" for a in argv]
    files = {"cfg.yaml": b"trainer:\n  max_epochs: 1\n"}
    needles = tuple(a for a in argv if a.strip()) + ("RUN", "PATH", "CODE", "CONFIG", "KEY=VALUE", "NAME", "N")
    store = "run" if command in ("diagnose", "import") else "none"
    dry_run = command == "train" and "--dry-run" in argv and "--help" not in argv and "-h" not in argv
    return Case("argv", list(argv), files, store=store, needles=needles, dry_run=dry_run, copies=dict(ARGV_FILES))


# --- family b: config files ------------------------------------------------------------------


def _tree(pairs: list[tuple[str, object]]) -> dict:
    from paramdoctor.config.loading import set_dotted

    tree: dict = {}
    for dotted, value in pairs:
        set_dotted(tree, dotted, value)
    return tree


def _dump(tree: object, *, flow: bool = False, unicode: bool = True) -> bytes:
    try:
        text = yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=unicode, sort_keys=False)
    except (yaml.YAMLError, RecursionError, ValueError):
        text = repr(tree)
    return text.encode("utf-8", "surrogatepass")


def _corrupt(data: bytes, how: int, where: float, junk: bytes) -> bytes:
    """One byte-level corruption of a text file."""
    cut = int(len(data) * where)
    lines = data.splitlines(keepends=True)
    line_at = int(len(lines) * where) if lines else 0
    forms = [
        lambda: data[:cut],  # truncated
        lambda: data[:cut] + junk + data[cut:],  # junk inserted
        lambda: data[:cut] + bytes([data[cut] ^ 0xFF]) + data[cut + 1:] if cut < len(data) else data + b"\xff",  # a flipped byte
        lambda: data[:cut] + b"\xff\xfe\xe9\x80" + data[cut:],  # not UTF-8
        lambda: b"\xef\xbb\xbf" + data,  # UTF-8 BOM
        lambda: data.decode("utf-8", "replace").encode("utf-16"),  # UTF-16 with BOM
        lambda: data.replace(b"  ", b"\t"),  # tabs for indentation
        lambda: b"".join(lines[:line_at] + lines[line_at:line_at + 1] * 2 + lines[line_at + 1:]),  # a line twice
        lambda: data[:cut] + b"[{" + data[cut:],  # unbalanced brackets
        lambda: data + b"\n---\n" + data,  # two documents
        lambda: data.replace(b"\n", b"\r"),  # old Mac line endings
        lambda: data.replace(b": ", b":"),  # no space after colons
        lambda: data + b"\x00",  # NUL
    ]
    return forms[how % len(forms)]()


corruptions = st.tuples(st.integers(0, 12), st.floats(0, 1), st.binary(max_size=12))

SPECIAL_CONFIGS = [
    b"",
    b"\n\n# only a comment\n",
    b"~\n",
    b"- 1\n- 2\n",
    b"just a string\n",
    b"42\n",
    b"seed: 1\nseed: 2\n",  # duplicate key
    b"optimizer:\n  lr: 0.1\noptimizer:\n  name: sgd\n",  # duplicate section
    b"optimizer: {lr: 0.1, lr: 0.2}\n",
    b"x: &a 1\nseed: *a\n",  # an alias
    b"optimizer: &o {lr: 0.1}\nscheduler: *o\n",
    b"seed: *missing\n",
    b"seed: !!python/object/apply:os.system ['echo pwned']\n",
    b"seed: !!binary aGVsbG8=\n",
    b"seed: !!timestamp 2001-12-14\n",
    b"seed: !!set {a, b}\n",
    b"? [a, b]\n: 1\n",
    b"1: 2\nnull: 3\ntrue: 4\n",
    b".nan: 1\n",
    b"optimizer:\n  betas: [0.9]\n",
    b"optimizer:\n  betas: [.nan, .inf]\n",
    b"optimizer:\n  lr: !!float nan\n",
    b"data:\n  subset: 1e400\n",
    b"data:\n  batch_size: 99999999999999999999999\n",
    b"trainer:\n  max_epochs: -1\n",
    b"optimizer: []\n",
    b"optimizer:\n",
    b"%YAML 1.1\n---\nseed: 1\n",
    b"%TAG ! tag:example.com,2000:\n---\nseed: !foo 1\n",
    b"seed: 1\n...\nseed: 2\n",
    b"\xff\xfe\x00\x00",
    b"seed: \"\\ud800\"\n",
    b"experiment:\n  name: \"\\0\"\n",
]


@st.composite
def deep_nesting(draw) -> bytes:
    depth = draw(st.integers(50, 3000))
    kind = draw(st.sampled_from(["dict", "list", "block"]))
    if kind == "dict":
        return b"optimizer: " + b"{a: " * depth + b"1" + b"}" * depth + b"\n"
    if kind == "list":
        return b"optimizer:\n  betas: " + b"[" * depth + b"1" + b"]" * depth + b"\n"
    return b"".join(b"  " * i + b"a:\n" for i in range(min(depth, 400))) + b"  " * min(depth, 400) + b"b: 1\n"


@st.composite
def config_trees(draw, keys: st.SearchStrategy[str] = config_keys) -> bytes:
    pairs = draw(st.lists(st.tuples(keys, yaml_values), max_size=8))
    return _dump(_tree(pairs), flow=draw(st.booleans()), unicode=draw(st.booleans()))


@st.composite
def config_bytes(draw, keys: st.SearchStrategy[str] = config_keys) -> bytes:
    kind = draw(st.sampled_from(["tree", "tree", "tree", "corrupt", "special", "junk", "deep"]))
    if kind == "tree":
        return draw(config_trees(keys))
    if kind == "corrupt":
        data = draw(config_trees(keys))
        for how, where, junk in draw(st.lists(corruptions, min_size=1, max_size=3)):
            data = _corrupt(data, how, where, junk)
        return data
    if kind == "special":
        return draw(st.sampled_from(SPECIAL_CONFIGS))
    if kind == "deep":
        return draw(deep_nesting())
    return draw(st.binary(max_size=300))


CONFIG_NAMES = ["cfg.yaml", "cfg.yml", "config", "ünï cödé.yaml", "cfg.json", ".yaml", "a b.yaml"]


@st.composite
def config_dry_run_cases(draw) -> Case:
    name = draw(st.sampled_from(CONFIG_NAMES))
    kind = draw(st.sampled_from(["file"] * 8 + ["dir", "missing"]))
    content = draw(config_bytes()) if kind == "file" else (None if kind == "dir" else b"")
    overrides = draw(st.lists(st.sampled_from(["optimizer.lr=3e-4", "trainer.max_epochs=1", "seed=7"]), max_size=2))
    return config_case(content, name=name, overrides=overrides, missing=kind == "missing")


def config_case(content: bytes | None, *, name: str = "cfg.yaml", overrides: list[str] = (), missing: bool = False) -> Case:
    """``train NAME --dry-run [overrides]`` with NAME holding ``content`` (None: NAME is a folder)."""
    files: dict[str, bytes | None] = {} if missing else {name: content}
    argv = ["train", name, "--dry-run", *overrides]
    return Case("config", argv, files, store="none", needles=(name, *KNOWN_KEYS, *SECTIONS), dry_run=True)


#: Keys a real one-epoch digits run may take from a fuzzed file without becoming slow or writing outside its folder.
TRAINING_SAFE_KEYS = [
    k for k in KNOWN_KEYS
    if k.split(".")[0] in ("optimizer", "scheduler", "early_stopping")
    or k in (
        "seed", "experiment.name", "experiment.run_name", "data.val_fraction", "data.augment", "model.dropout",
        "model.batchnorm_eval", "model.batchnorm_momentum", "trainer.gradient_clip_val", "trainer.label_smoothing",
        "trainer.stop_on_nonfinite", "trainer.log_every_n_steps", "trainer.telemetry_every_n_steps", "trainer.precision",
        "trainer.accumulate_grad_batches",
    )
]


@st.composite
def config_training_cases(draw) -> Case:
    return config_training_case(draw(config_bytes(st.sampled_from(TRAINING_SAFE_KEYS or KNOWN_KEYS[:1]))))


def config_training_case(content: bytes) -> Case:
    """``train cfg.yaml`` for real, one cheap epoch: a config that loads trains and is logged, one that does not leaves no run."""
    argv = ["train", "cfg.yaml", *CHEAP_TRAINING]
    return Case("config", argv, {"cfg.yaml": content}, store="empty", needles=("cfg.yaml", *KNOWN_KEYS, *SECTIONS))


# --- family c: key=value overrides ------------------------------------------------------------

OVERRIDE_VALUES = [
    *NUMBER_WORDS, "[1,", "[0.9, 0.99]", "[0.9]", "[.nan, 1]", "{a: b}", "{lr: 1}", "!!python/object/apply:os.system [id]",
    "&a [*a]", "*x", "&a 1", "'quoted'", '"unterminated', "a: b", "- 1", "|", ">", "#", "key=value", "==", "\x00",
    "cpu", "cuda", "cuda:99", "mps", "bf16", "16", "32", "digits", "cifar10", "imagefolder", "resnet18", "nope_model",
    "sgd", "adamw", "onecycle", "val/loss", "min", "DEFAULT", "IMAGENET1K_V1", "runs:/", "runs:/abc", "yes", "off",
]


@st.composite
def override_cases(draw) -> Case:
    items = draw(st.lists(
        st.tuples(
            config_keys,
            st.one_of(st.sampled_from(OVERRIDE_VALUES), safe_text(max_size=20), surrogate_text, long_text),
            st.sampled_from(["=", "=", " = ", "==", "= "]),
        ),
        min_size=1, max_size=5,
    ))
    return override_case([f"{k}{sep}{v}" for k, v, sep in items])


def override_case(overrides: list[str]) -> Case:
    """``train --dry-run KEY=VALUE ...``."""
    needles = tuple(o.split("=", 1)[0] for o in overrides) + tuple(overrides) + ("override",)
    return Case("override", ["train", "--dry-run", *overrides], store="none", needles=needles, dry_run=True)


# --- family d: rule files and rule parameters ------------------------------------------------


def _load_rules() -> dict[str, dict]:
    out = {}
    for path in sorted(RULES_DIR.glob("*.yaml")):
        with contextlib.suppress(Exception):
            out[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return out


BUILTIN_RULES = _load_rules()
RULE_CODES = sorted(BUILTIN_RULES) or ["PD301"]
RULE_PARAMS = sorted({p for r in BUILTIN_RULES.values() for p in (r.get("params") or {})}) or ["min_rise"]
RULE_TOP_KEYS = sorted({k for r in BUILTIN_RULES.values() for k in r})
EVIDENCE_TEMPLATES = [
    "{", "}", "{}", "{0}", "{rise", "{rise:%}", "{rise:.999999f}", "{rise!r}", "{rise!x}", "{nonexistent}",
    "{rise.__class__}", "{rise.__class__.__mro__[1].__subclasses__}", "{best_x[0]}", "{unit:>99999}", "%s %d",
    "{rise:,.0%} {held:d}", "{{escaped}}", "", "ünï {rise}",
]
WHEN_OPS = [">=", "<=", ">", "<", "==", "!=", "in", "=>", "", "eq", "__import__"]
PATCH_OPS = ["set", "multiply", "add", "at_least", "at_most", "divide", "", "exec"]


@st.composite
def mutated_rule(draw) -> dict:
    code = draw(st.sampled_from(RULE_CODES))
    rule = json.loads(json.dumps(BUILTIN_RULES.get(code, {"code": code})))
    if draw(st.integers(0, 4)):  # mostly a new rule: a copy under its own code loads, and its mutation gets to run
        number = draw(st.integers(900, 999))
        rule.update(code=f"PD{number}", slug=f"fuzz-rule-{number}")
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from([  # weighted towards mutations the schema lets through to the engine
            "param", "param", "param", "evidence", "evidence", "when_value", "when_value", "patch", "patch", "for",
            "top", "drop", "bogus", "when", "code", "category",
        ]))
        if what == "top" and rule:
            rule[draw(st.sampled_from(sorted(rule)))] = draw(yaml_values)
        elif what == "drop" and rule:
            rule.pop(draw(st.sampled_from(sorted(rule))), None)
        elif what == "bogus":
            rule[draw(st.sampled_from(["requirez", "patches", "exec", "params ", "Code"]))] = draw(yaml_values)
        elif what == "param":
            params = rule.get("params") if isinstance(rule.get("params"), dict) else {}
            name = draw(st.sampled_from(sorted(params) + ["bogus_param"]) if params else st.just("bogus_param"))
            params[name] = draw(st.one_of(weird_floats, weird_ints, scalars, yaml_values))
            rule["params"] = params
        elif what in ("when", "when_value"):
            conds = rule.get("when") if isinstance(rule.get("when"), list) else []
            cond = dict(conds[0]) if conds and isinstance(conds[0], dict) else {}
            if what == "when":
                cond[draw(st.sampled_from(["op", "field", "param", "if_missing"]))] = draw(
                    st.one_of(st.sampled_from(WHEN_OPS), scalars))
            else:
                cond.pop("param", None)
                cond["value"] = draw(st.one_of(weird_floats, scalars))
            rule["when"] = [cond, *conds[1:]]
        elif what == "for":
            rule["for"] = draw(st.one_of(
                st.fixed_dictionaries({"param": st.sampled_from(RULE_PARAMS + ["bogus"])}),
                st.fixed_dictionaries({"points": st.one_of(weird_ints, weird_floats)}),
                yaml_values,
            ))
        elif what == "evidence":
            rule["evidence"] = draw(st.one_of(st.sampled_from(EVIDENCE_TEMPLATES), safe_text(max_size=30)))
        elif what == "patch":
            items = rule.get("patch") if isinstance(rule.get("patch"), list) else []
            item = dict(items[0]) if items and isinstance(items[0], dict) else {"key": "optimizer.lr", "op": "set"}
            field_name = draw(st.sampled_from(["op", "key", "value", "min", "max", "only_if", "value_from", "reason"]))
            if field_name == "op":
                item["op"] = draw(st.sampled_from(PATCH_OPS))
            elif field_name == "key":
                item["key"] = draw(config_keys)
            elif field_name in ("min", "max", "value"):
                item[field_name] = draw(st.one_of(weird_floats, weird_ints, scalars))
            else:
                item[field_name] = draw(yaml_values)
            rule["patch"] = [item, *items[1:]]
        elif what == "code":
            rule["code"] = draw(st.one_of(st.sampled_from(["PD999", "PD301", "pd301", "", "X" * 200, "PD 1"]), scalars))
        elif what == "category":
            rule[draw(st.sampled_from(["category", "severity", "signal", "slug"]))] = draw(
                st.one_of(st.sampled_from(["overfitting", "critical", "lr_too_high", "nope", ""]), scalars))
    return rule


RULE_PARAM_PAIRS = sorted((c, p) for c, r in BUILTIN_RULES.items() for p in (r.get("params") or {})) or [("PD301", "min_rise")]
hostile_param_values = st.one_of(
    st.sampled_from(NUMBER_WORDS), weird_floats.map(repr), weird_ints.map(str),
    st.sampled_from(["[1, 2]", "{a: 1}", "true", "''", "1e-300", "-1e-300", "0.5", "3", "100"]),
)
set_items = st.one_of(
    st.tuples(st.sampled_from(RULE_PARAM_PAIRS), hostile_param_values).map(lambda t: f"{t[0][0]}.{t[0][1]}={t[1]}"),
    st.tuples(
    st.one_of(st.sampled_from(RULE_CODES), st.sampled_from(["PD999", "pd301", "val-loss-turns-up", "", "*"]), safe_text(max_size=6)),
    st.one_of(st.sampled_from(RULE_PARAMS), st.sampled_from(["bogus", "", "min_rise.x"]), safe_text(max_size=6)),
    st.one_of(st.sampled_from(OVERRIDE_VALUES), safe_text(max_size=12)),
).map(lambda t: f"{t[0]}.{t[1]}={t[2]}"),
)


@st.composite
def project_file(draw) -> bytes:
    kind = draw(st.sampled_from(["tree", "tree", "corrupt", "special"]))
    rules: dict = {}
    for _ in range(draw(st.integers(0, 3))):
        code = draw(st.one_of(st.sampled_from(RULE_CODES), safe_text(max_size=6)))
        rules[code] = draw(st.one_of(
            st.dictionaries(st.sampled_from(RULE_PARAMS + ["bogus"]), st.one_of(weird_floats, weird_ints, scalars), max_size=2),
            yaml_values,
        ))
    if draw(st.booleans()):
        rules["disable"] = draw(st.one_of(st.lists(st.one_of(st.sampled_from(RULE_CODES), safe_text(max_size=6)), max_size=3), scalars))
    data = _dump({"rules": rules} if draw(st.booleans()) else draw(yaml_values))
    if kind == "corrupt":
        data = _corrupt(data, *draw(corruptions))
    elif kind == "special":
        data = draw(st.sampled_from(SPECIAL_CONFIGS))
    return data


DIAGNOSE_EXPORTS = {
    "run.json": "sample_runs/diverged_sgd_lr10/run.json",
    "overfit.json": "sample_runs/overfit_small_subset_adam/run.json",
}


@st.composite
def rules_cases(draw) -> Case:
    files: dict[str, bytes | None] = {}
    for _ in range(draw(st.integers(1, 2))):
        rule = draw(mutated_rule())
        name = draw(st.one_of(st.sampled_from(["R.yaml", "PD301.yaml", "x.yml", "r.YAML", "ünï.yaml"]), file_names.map(lambda s: s + ".yaml")))
        data = _dump(rule)
        if draw(st.integers(0, 4)) == 0:
            data = _corrupt(data, *draw(corruptions))
        files[f"myrules/{name}"] = data
    sets = draw(st.lists(set_items, max_size=2))
    set_args = [a for s in sets for a in ("--set", s)]
    if draw(st.integers(0, 3)) == 0:
        files["paramdoctor.yaml"] = draw(project_file())
    run = draw(st.sampled_from(sorted(DIAGNOSE_EXPORTS)))
    shape = draw(st.sampled_from(["diagnose", "diagnose", "diagnose-json", "list", "explain", "set-only"]))
    if shape == "diagnose":
        argv = ["diagnose", run, "--no-log", "--rules", "myrules", *set_args]
    elif shape == "diagnose-json":
        argv = ["diagnose", run, "--no-log", "--json", "--rules", "myrules", *set_args]
    elif shape == "list":
        argv = ["rules", "--rules", "myrules", *draw(st.sampled_from([[], ["--json"], ["--markdown"]]))]
    elif shape == "explain":
        code = draw(st.one_of(st.sampled_from(RULE_CODES + ["PD999"]), st.just(str(rule.get("code")))))
        argv = ["rules", code, "--rules", "myrules", *draw(st.sampled_from([[], ["--json"]]))]
    else:
        argv = ["diagnose", run, "--no-log", *set_args] if set_args else ["diagnose", run, "--no-log", "--set", draw(set_items)]
    return rules_case(argv, files)


def rules_case(argv: list[str], files: dict[str, bytes | None]) -> Case:
    """``diagnose``/``rules`` with rule files under ``myrules/`` (and maybe a ``paramdoctor.yaml``) beside two exports."""
    names = [Path(rel).name for rel in files if rel.startswith("myrules/")]
    sets = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
    needles = ("myrules", "paramdoctor.yaml", "rule", *names, *sets, *RULE_CODES, *RULE_PARAMS, *[a for a in argv if a.startswith("PD")])
    return Case("rules", argv, {"myrules": None, **files}, store="none", needles=needles, copies=dict(DIAGNOSE_EXPORTS))


# --- family e: run exports and other tools' logs ------------------------------------------------

EXPORT_SOURCES = [
    "sample_runs/diverged_sgd_lr10/run.json",
    "sample_runs/too_few_epochs/run.json",
    "sample_runs/exploding_adamw_lr1/run.json",
]
_EXPORTS = {src: json.loads((REPO / src).read_text()) for src in EXPORT_SOURCES if (REPO / src).is_file()}


def _foreign_logs(max_bytes: int = 40_000) -> list[tuple[str, str]]:
    """(folder, log file) of the real corpus in CSV, JSON and JSONL, small enough to copy per case."""
    found = []
    real = SAMPLE_RUNS / "real"
    for folder in sorted(p for p in real.iterdir() if p.is_dir()) if real.is_dir() else []:
        for log in sorted(folder.iterdir()):
            if log.name in ("expect.yaml", "source.yaml") or log.suffix not in (".csv", ".json", ".jsonl", ".log"):
                continue
            if log.stat().st_size <= max_bytes:
                found.append((str(folder.relative_to(REPO)), log.name))
    return found


FOREIGN_LOGS = _foreign_logs()
_NUMBER_RE = re.compile(rb"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
HOSTILE_NUMBERS = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"-Infinity", b"1e309", b"1e308", b"-1e308",
                   b"99999999999999999999999999", b"-0", b"", b"null", b"\"0.5\"", b"0x10", b"1,5", b"1e-320"]


def _json_paths(node: object, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            paths.extend(_json_paths(v, prefix + (k,)))
    elif isinstance(node, list) and node:
        for i in sorted({0, len(node) // 2, len(node) - 1}):
            paths.extend(_json_paths(node[i], prefix + (i,)))
    return paths


def _set_path(node: object, path: tuple, value: object) -> object:
    if not path:
        return value
    parent = node
    for part in path[:-1]:
        parent = parent[part]
    if value is _DELETE:
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return node


_DELETE = object()

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), weird_ints, weird_floats, safe_text(max_size=10),
              st.sampled_from(["nan", "inf", "-inf", "FINISHED", "RUNNING", "epoch", "step", "val/acc", "max", ""])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(safe_text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@st.composite
def export_bytes(draw) -> bytes:
    data = json.loads(json.dumps(_EXPORTS[draw(st.sampled_from(sorted(_EXPORTS)))]))
    series_keys = sorted(data.get("series", {}))
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["path", "path", "delete", "series", "series", "meta", "config", "bytes"]))
        if what in ("path", "delete"):
            paths = [p for p in _json_paths(data) if p]
            path = draw(st.sampled_from(paths))
            data = _set_path(data, path, _DELETE if what == "delete" else draw(json_values))
        elif what == "series" and series_keys and isinstance(data.get("series"), dict):
            key = draw(st.one_of(st.sampled_from(series_keys), st.sampled_from(["val/acc", "val/loss", "train/loss", "x", ""])))
            values = draw(st.one_of(
                st.lists(st.one_of(weird_floats, st.sampled_from(["nan", "inf", "x", None, [], True])), max_size=12),
                st.integers(0, 5000).map(lambda n: [1e308 * (-1) ** i for i in range(n)]),
            ))
            steps = draw(st.one_of(st.just(list(range(len(values)))), st.lists(st.one_of(weird_floats, weird_ints), max_size=12)))
            data["series"][key] = draw(st.one_of(
                st.just({"steps": steps, "values": values}), st.just({"values": values}), json_values))
        elif what == "meta" and isinstance(data.get("meta"), dict):
            data["meta"][draw(st.sampled_from(
                ["num_classes", "monitor", "mode", "stop_reason", "max_epochs", "steps_per_epoch", "train_samples",
                 "best_epoch", "best_value", "failure", "bogus"]))] = draw(json_values)
        elif what == "config" and isinstance(data.get("config"), dict):
            section = draw(st.sampled_from(sorted(data["config"]) + ["bogus"]))
            target = data["config"].get(section)
            if isinstance(target, dict) and target and draw(st.booleans()):
                target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
            else:
                data["config"][section] = draw(json_values)
    raw = json.dumps(data, allow_nan=True).encode()
    if draw(st.integers(0, 3)) == 0:
        raw = _corrupt(raw, *draw(corruptions))
    return raw


def _drop_column(data: bytes, index: int) -> bytes:
    out = []
    for line in data.splitlines(keepends=True):
        sep = b";" if line.count(b";") > line.count(b",") else b","
        cells = line.rstrip(b"\r\n").split(sep)
        if len(cells) > 1:
            del cells[index % len(cells)]
        out.append(sep.join(cells) + line[len(line.rstrip(b"\r\n")):])
    return b"".join(out)


def _drop_json_key(data: bytes, pick: int) -> bytes:
    try:
        tree = json.loads(data)
    except ValueError:
        return data
    keys = sorted({k for p in _json_paths(tree) for k in p if isinstance(k, str)})
    if not keys:
        return data
    key = keys[pick % len(keys)]

    def drop(node: object) -> object:
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if k != key}
        if isinstance(node, list):
            return [drop(v) for v in node]
        return node

    return json.dumps(drop(tree), allow_nan=True).encode()


@st.composite
def log_mutation(draw, data: bytes) -> bytes:
    how = draw(st.sampled_from(["numbers", "numbers", "truncate", "flip", "drop", "utf8", "empty", "header", "lines", "corrupt"]))
    if how == "numbers":
        for _ in range(draw(st.integers(1, 5))):
            spans = [m.span() for m in _NUMBER_RE.finditer(data)]
            if not spans:
                break
            start, end = spans[draw(st.integers(0, len(spans) - 1))]
            data = data[:start] + draw(st.sampled_from(HOSTILE_NUMBERS)) + data[end:]
        return data
    if how == "truncate":
        return data[: int(len(data) * draw(st.floats(0, 1)))]
    if how == "flip":
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            if buf:
                buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
        return bytes(buf)
    if how == "drop":
        return _drop_json_key(data, draw(st.integers(0, 1000))) if data.lstrip()[:1] in (b"{", b"[") else _drop_column(data, draw(st.integers(0, 30)))
    if how == "utf8":
        return data.decode("utf-8", "replace").encode(draw(st.sampled_from(["latin-1", "utf-16", "utf-32", "cp1252"])), "replace") \
            if draw(st.booleans()) else data + b"\xff\xfe\x80"
    if how == "empty":
        return draw(st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"{}", b"[]", b"null"]))
    if how == "header":
        return data.splitlines(keepends=True)[0] if data else data
    if how == "lines":
        lines = data.splitlines(keepends=True)
        return b"".join(draw(st.permutations(lines))) if len(lines) < 400 else b"".join(lines[::-1])
    return _corrupt(data, *draw(corruptions))


@st.composite
def runfile_cases(draw) -> Case:
    kind = draw(st.sampled_from(["export", "foreign", "foreign"])) if FOREIGN_LOGS else "export"
    extra = draw(st.sampled_from([[], [], ["--json"], ["--write", "next.yaml"]]))
    if kind == "export":
        return export_case(draw(export_bytes()), name=draw(st.sampled_from(["run.json", "export.json", "run.JSON"])), extra=extra)
    folder, log = draw(st.sampled_from(FOREIGN_LOGS))
    original = (REPO / folder / log).read_bytes()
    data = original
    for _ in range(draw(st.integers(1, 3))):
        data = draw(log_mutation(data))
    target = draw(st.sampled_from([f"log/{log}", f"log/{log}", "log"]))
    return foreign_case(folder, log, data, target=target, extra=extra)


def export_case(content: bytes, *, name: str = "run.json", extra: list[str] = ()) -> Case:
    """``diagnose NAME --no-log`` of a (mutated) run export."""
    argv = ["diagnose", name, "--no-log", *extra]
    return Case("runfile", argv, {name: content}, store="none",
                needles=(name, "next.yaml", "--write", "config", "series", "run export"))


def foreign_case(folder: str, log: str, content: bytes, *, target: str | None = None, extra: list[str] = ()) -> Case:
    """``diagnose log/LOG --no-log`` (or the folder) with LOG holding ``content`` beside the other files of ``folder``."""
    target = target or f"log/{log}"
    copies = {f"log/{p.name}": str(p.relative_to(REPO)) for p in (REPO / folder).iterdir()
              if p.is_file() and p.name not in (log, "expect.yaml", "source.yaml")}
    argv = ["diagnose", target, "--no-log", *extra]
    return Case("runfile", argv, {f"log/{log}": content}, store="none",
                needles=(target, log, "log", "next.yaml", "--write", "--map"), copies=copies)


# --- family f: checkpoints for model.weights --------------------------------------------------


def _torch_bytes(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


_STATE_CACHE: dict[str, bytes] = {}


def small_cnn_state() -> bytes:
    """A real small_cnn state dict for digits (1 channel, 10 classes), as torch.save writes it."""
    if "state" not in _STATE_CACHE:
        import torch

        from paramdoctor.models.small_cnn import SmallCNN

        torch.manual_seed(0)
        _STATE_CACHE["state"] = _torch_bytes(SmallCNN(1, 10).state_dict())
    return _STATE_CACHE["state"]


@st.composite
def checkpoint_bytes(draw) -> bytes:
    import torch

    kind = draw(st.sampled_from([
        "random", "text", "truncated", "truncated", "flipped", "list", "int", "wrong_dict", "wrong_dict", "nested",
        "empty_dict", "non_str_keys", "zip_junk", "pickle_code", "valid",
    ]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "text":
        return draw(st.sampled_from([b"", b"not a checkpoint\n", "ünï\n".encode(), b"PK\x03\x04", b"{\"state_dict\": {}}"]))
    if kind in ("truncated", "flipped"):
        state = small_cnn_state()
        if kind == "truncated":
            return state[: draw(st.integers(0, len(state) - 1))]
        buf = bytearray(state)
        for _ in range(draw(st.integers(1, 6))):
            buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
        return bytes(buf)
    if kind == "list":
        return _torch_bytes([torch.zeros(draw(st.integers(0, 4))) for _ in range(draw(st.integers(0, 3)))])
    if kind == "int":
        return _torch_bytes(draw(st.one_of(st.integers(-10, 10), st.floats(allow_nan=True), st.none(), st.text(max_size=5))))
    if kind == "wrong_dict":
        shapes = st.lists(st.integers(0, 5), max_size=3)
        names = st.one_of(st.sampled_from(["head.weight", "head.bias", "features.0.0.weight", "x", "module.head.weight",
                                           "_orig_mod.head.weight", "AuxLogits.fc.weight"]), safe_text(max_size=10))
        entries = draw(st.dictionaries(names, st.tuples(shapes, st.sampled_from(["float", "int", "bool", "half", "nan"])), max_size=4))
        tensors = {}
        for name, (shape, dtype) in entries.items():
            t = torch.zeros(shape)
            tensors[name] = {"float": t, "int": t.long(), "bool": t.bool(), "half": t.half(), "nan": t + float("nan")}[dtype]
        return _torch_bytes(draw(st.sampled_from([tensors, {"state_dict": tensors}, {"model": tensors}, {"state_dict": list(tensors.values())}])))
    if kind == "nested":
        return _torch_bytes({"state_dict": {"state_dict": {"a": torch.zeros(1)}}, "model": 3})
    if kind == "empty_dict":
        return _torch_bytes(draw(st.sampled_from([{}, {"state_dict": {}}, {"model": {}}])))
    if kind == "non_str_keys":
        return _torch_bytes({1: torch.zeros(1), (2, 3): torch.ones(2)})
    if kind == "zip_junk":
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", draw(st.binary(max_size=50)))
            zf.writestr("archive/version", b"3\n")
        return buf.getvalue()
    if kind == "pickle_code":
        return pickle.dumps(Path("x"))  # a class weights_only refuses
    state = torch.load(io.BytesIO(small_cnn_state()), weights_only=True)
    if draw(st.booleans()):
        state = {k: v + float("nan") if k.startswith("head") else v for k, v in state.items()}
    return _torch_bytes(state)


@st.composite
def weights_cases(draw) -> Case:
    name = draw(st.sampled_from(["w.pt", "w.pth", "w.bin", "w.ckpt", "ckpt/w", "w.pt.tmp", "ünï.pt"]))
    kind = draw(st.sampled_from(["file"] * 9 + ["dir"]))
    content = draw(checkpoint_bytes()) if kind == "file" else None
    return weights_case(content, name=name, ref=draw(st.sampled_from([name, f"./{name}"])))


def weights_case(content: bytes | None, *, name: str = "w.pt", ref: str | None = None) -> Case:
    """``train model.weights=REF`` for real, one cheap epoch, with NAME holding ``content`` (None: a folder)."""
    argv = ["train", f"model.weights={ref or name}", *CHEAP_TRAINING]
    return Case("weights", argv, {name: content}, store="empty", needles=("model.weights", name))


# --- family g: datasets read from disk (an ImageFolder tree, CIFAR pickles) ----------------------

FOLDER_TRAINING = (
    "data.dataset=imagefolder", "data.root=imgs", "data.batch_size=4", "data.image_size=8", "trainer.max_epochs=1",
    "model.name=small_cnn", "data.num_workers=0", "trainer.device=cpu", "model.weights=null", "-q",
)
CIFAR_TRAINING = (
    "data.dataset=cifar10", "data.root=cifar", "data.batch_size=4", "data.subset=null", "trainer.max_epochs=1",
    "model.name=small_cnn", "data.image_size=null", "trainer.device=cpu", "model.weights=null", "-q",
)
CIFAR_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def png_bytes(width: int, height: int, mode: str = "RGB", seed: int = 0) -> bytes:
    """A real PNG of random pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (a decompression bomb to a reader that trusts it)."""
    import struct
    import zlib

    data = bytearray(png_bytes(1, 1))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["png", "png", "png", "png", "mode", "tiny", "truncated", "empty", "text", "bomb", "junk"]))
    if kind == "png":
        return png_bytes(draw(st.integers(8, 16)), draw(st.integers(8, 16)), seed=draw(st.integers(0, 9)))
    if kind == "mode":
        return png_bytes(10, 10, mode=draw(st.sampled_from(["L", "RGBA", "P", "1", "I;16", "LA"])))
    if kind == "tiny":
        return png_bytes(1, draw(st.integers(1, 3)))
    if kind == "truncated":
        data = png_bytes(12, 12)
        return data[: draw(st.integers(8, len(data) - 1))]
    if kind == "empty":
        return b""
    if kind == "text":
        return b"not an image\n"
    if kind == "bomb":
        return png_claiming(draw(st.sampled_from([10_000, 20_000, 70_000, 2**31 - 1])), draw(st.sampled_from([10_000, 70_000])))
    return draw(st.binary(max_size=64))


@st.composite
def image_folder_cases(draw) -> Case:
    files: dict[str, bytes | None] = {"imgs": None}
    classes = draw(st.lists(st.one_of(st.sampled_from(["cat", "dog", "0", "ünï", ".hidden", " "]), file_names),
                            max_size=3, unique=True))
    for c in classes:
        files[f"imgs/{c}"] = None
        for i in range(draw(st.integers(0, 5))):
            ext = draw(st.sampled_from([".png", ".png", ".jpg", ".JPEG", ".txt", ""]))
            files[f"imgs/{c}/{i}{ext}"] = draw(image_bytes())
    if draw(st.integers(0, 4)) == 0:
        files["imgs/stray.png"] = draw(image_bytes())
    extra = draw(st.lists(st.sampled_from(["data.image_size=null", "data.augment=false", "data.val_fraction=0.5",
                                           "data.subset=1", "data.batch_size=1"]), max_size=2, unique=True))
    return data_case([*FOLDER_TRAINING, *extra], files)


def _pickle(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


CIFAR_BATCH_FLAWS = ("labels", "shape", "dtype", "keys", "list", "truncated", "empty", "text", "count", "absent")
CIFAR_META_FLAWS = ("few", "many", "missing_key", "not_dict", "truncated", "absent")


@st.composite
def cifar_batch(draw, flaw: str | None, n: int = 2) -> bytes | None:
    """One CIFAR batch file: right, or wrong in the way ``flaw`` names (never random bytes: these are pickles, and pickles run code)."""
    import numpy as np

    data = np.random.default_rng(draw(st.integers(0, 9))).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [draw(st.integers(0, 9)) for _ in range(n)]
    if flaw == "absent":
        return None
    if flaw == "labels":
        labels = [draw(st.one_of(st.sampled_from([-1, 10, 99, 2**40]), st.just("cat"), st.just(1.5), st.none())) for _ in range(n)]
    elif flaw == "shape":
        data = data[:, : draw(st.integers(0, 3071))]
    elif flaw == "dtype":
        data = data.astype(draw(st.sampled_from(["float32", "int64", "bool"]))) * draw(st.sampled_from([1, -1, 1000]))
    elif flaw == "count":
        labels = labels[: draw(st.integers(0, n - 1))] if draw(st.booleans()) else labels + [0, 1]
    batch = {"batch_label": "b", "labels": labels, "data": data}
    if flaw == "keys":
        batch.pop(draw(st.sampled_from(["labels", "data"])))
    raw = _pickle(batch if flaw != "list" else [labels, data])
    if flaw == "truncated":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if flaw == "empty":
        return b""
    if flaw == "text":
        return b"not a pickle\n"
    return raw


def cifar_meta(flaw: str | None) -> bytes | None:
    names = {"few": 3, "many": 12}.get(flaw or "", 10)
    content: object = {"label_names": [f"class{k}" for k in range(names)], "num_vis": 3072}
    if flaw == "missing_key":
        content = {"num_vis": 3072}
    elif flaw == "not_dict":
        content = ["a", "b"]
    elif flaw == "absent":
        return None
    raw = _pickle(content)
    return raw[: len(raw) // 2] if flaw == "truncated" else raw


@st.composite
def cifar_cases(draw) -> Case:
    """A miniature cifar-10-batches-py (two images a batch) with up to two flaws in its files."""
    flaws: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*CIFAR_FILES, "batches.meta"]))
        flaws[name] = draw(st.sampled_from(CIFAR_META_FLAWS if name == "batches.meta" else CIFAR_BATCH_FLAWS))
    folder = "cifar/cifar-10-batches-py"
    files: dict[str, bytes | None] = {}
    for name in CIFAR_FILES:
        content = draw(cifar_batch(flaws.get(name)))
        if content is not None:
            files[f"{folder}/{name}"] = content
    meta = cifar_meta(flaws.get("batches.meta"))
    if meta is not None:
        files[f"{folder}/batches.meta"] = meta
    return data_case(list(CIFAR_TRAINING), files)


def data_case(argv_tail: list[str], files: dict[str, bytes | None]) -> Case:
    """``train`` for real on a dataset read from ``imgs/`` or ``cifar/``: one short epoch, or one error line and no run."""
    return Case("data", ["train", *argv_tail], files, store="empty",
                needles=("data.", "dataset", "imgs", "cifar", "image"))


# --- the alias family: may hang, so it runs in a child process --------------------------------


@st.composite
def alias_bomb(draw) -> str:
    """A billion-laughs value in flow style, bounded: width**depth <= 10**6 nodes once expanded.

    ``[&a0 [lol], &a1 [*a0, *a0], &a2 [*a1, *a1], ...]`` (or the same with mappings): a few hundred
    bytes of YAML that a loader following every alias turns into a million nodes.
    """
    width = draw(st.integers(2, 10))
    depth = draw(st.integers(1, max(1, int(math.log(10**6) / math.log(width)))))
    if draw(st.booleans()):
        items = ["&a0 [lol]"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth + 1)]
        return "[" + ", ".join(items) + "]"
    items = ["k0: &a0 {k: lol}"] + [
        f"k{i}: &a{i} {{" + ", ".join(f"j{j}: *a{i - 1}" for j in range(width)) + "}" for i in range(1, depth + 1)
    ]
    return "{" + ", ".join(items) + "}"


ALIAS_PLACES = ("config", "config-known", "override", "rule", "project", "sidecar")


@st.composite
def alias_cases(draw) -> Case:
    where = draw(st.sampled_from(ALIAS_PLACES))
    return alias_case(draw(alias_bomb()), where, field_name=draw(st.sampled_from(["title", "params", "evidence", "requires"])))


def alias_case(bomb: str, where: str, *, field_name: str = "title") -> Case:
    """The flow value ``bomb`` placed in a config file, an override, a rule file, paramdoctor.yaml or a log's hparams.yaml."""
    if where in ("config", "config-known"):
        data = f"bomb: {bomb}\n" if where == "config" else f"optimizer:\n  betas: {bomb}\n"
        return Case("alias", ["train", "bomb.yaml", "--dry-run"], {"bomb.yaml": data.encode()},
                    needles=("bomb.yaml",), dry_run=True)
    if where == "override":
        return Case("alias", ["train", "--dry-run", f"optimizer.betas={bomb}"],
                    needles=("optimizer.betas", "override"), dry_run=True)
    export = {"run.json": DIAGNOSE_EXPORTS["run.json"]}
    if where == "rule":
        rule = dict(BUILTIN_RULES.get("PD301", {}), code="PD999", slug="bomb")
        rule.pop(field_name, None)
        text = _dump(rule).decode() + f"{field_name}: {bomb}\n"
        return Case("alias", ["diagnose", "run.json", "--no-log", "--rules", "myrules"],
                    {"myrules/bomb.yaml": text.encode()}, needles=("bomb.yaml", "myrules"), copies=export)
    if where == "project":
        data = f"rules:\n  PD301: {{min_rise: {bomb}}}\n"
        return Case("alias", ["diagnose", "run.json", "--no-log"], {"paramdoctor.yaml": data.encode()},
                    needles=("paramdoctor.yaml",), copies=export)
    folder = next((f for f, log in FOREIGN_LOGS if f.split("/")[-1].startswith("lightning") and log == "metrics.csv"), None)
    if folder is None:
        return Case("alias", ["diagnose", "run.json", "--no-log"], {"paramdoctor.yaml": f"x: {bomb}\n".encode()},
                    needles=("paramdoctor.yaml",), copies=export)
    return Case("alias", ["diagnose", "log/metrics.csv", "--no-log"], {"log/hparams.yaml": f"lr: {bomb}\n".encode()},
                needles=("log", "metrics.csv", "hparams.yaml"), copies={"log/metrics.csv": f"{folder}/metrics.csv"})


def bomb_text(width: int, depth: int) -> str:
    """``[&a0 [lol], &a1 [*a0, *a0, ...], ...]``: width**depth nodes once every alias is followed."""
    items = ["&a0 [lol]"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth + 1)]
    return "[" + ", ".join(items) + "]"


#: Each family's strategy, and whether its cases must run in a child process (input that may hang).
STRATEGIES: dict[str, st.SearchStrategy[Case]] = {
    "argv": argv_cases(),
    "config": st.one_of(config_dry_run_cases(), config_dry_run_cases(), config_dry_run_cases(), config_training_cases()),
    "override": override_cases(),
    "rules": rules_cases(),
    "runfile": runfile_cases(),
    "weights": weights_cases(),
    "data": st.one_of(image_folder_cases(), cifar_cases()),
    "alias": alias_cases(),
}
SUBPROCESS_FAMILIES = frozenset({"alias"})


# --- known hostile inputs: each family's explicit examples, run before the generated ones ---------


def _lightning_log() -> tuple[str, str]:
    return next(((f, log) for f, log in FOREIGN_LOGS if log == "metrics.csv"), (FOREIGN_LOGS or [("", "")])[0])


def explicit_examples(family: str) -> list[Case]:
    """Inputs that once broke (or nearly broke) the contract, so every run of the fuzz tests tries them."""
    if family == "argv":
        return [argv_case(a) for a in (
            [],
            ["nocmd"],
            ["train", "--dry-run", "--bogus"],
            ["train", "--dry-run", "x\x00y"],
            ["train", "--dry-run", "\n"],
            ["train", "--dry-run", "a" * 300],
            ["diagnose", "a" * 300],
            ["diagnose", "~no-such-user-here/run.json"],
            ["diagnose", "run.json", "--run-index", "x"],
            ["diagnose", "run.json", "--no-log", "--rules", "a" * 300],
            ["diagnose", "run.json", "--no-log", "--write", "a" * 300],
            ["diagnose", "run.json", "--no-log", "--write", "."],
            ["diagnose", "--set"],
            ["diagnose", os.fsdecode(b"\xff\xfe")],
            ["rules", "--json=1"],
            ["rules", "PD999"],
            ["import"],
            ["import", "."],
            ["import", "a" * 300],
            ["import", "~no-such-user-here/metrics.csv"],
        )]
    if family == "config":
        return [
            config_case(b"optimizer:\n  lr: \xff\n"),
            config_case(None),
            config_case(b"", missing=True),
            config_case(b"seed: 1\nseed: 2\n"),
            config_case(b"\xef\xbb\xbfseed: 3\n"),
            config_case(b"optimizer: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n"),
            config_case(b"seed: !!python/object/apply:os.system ['echo pwned']\n"),
            config_case(b"data:\n  subset: 1e400\n"),
            config_case(b"data:\n  batch_size: " + b"9" * 5000 + b"\n"),
            config_case("optimizer:\n  lr: 0.1\n".encode("utf-16")),
        ]
    if family == "config-train":
        return [config_training_case(b"optimizer:\n  lr: .nan\n"), config_training_case(b"seed: 3\n")]
    if family == "override":
        return [override_case(o) for o in (
            ["optimizer.lrr=3e-4"],
            ["=3"],
            ["optimizer.lr=nan"],
            ["data.augment=\udc80"],
            ["experiment.name=\udcff"],
            ["trainer.gradient_clip_val=" + "9" * 5000],
            [f"optimizer.betas={bomb_text(2, 7)}"],
            ["optimizer.betas=[&a [*a]]"],
            ["model.weights=runs:/"],
        )]
    if family == "rules":
        pd301 = BUILTIN_RULES.get("PD301", {"code": "PD301"})
        fresh = dict(pd301, code="PD901", slug="fuzz-rule-901")
        run = ["diagnose", "overfit.json", "--no-log"]
        return [
            rules_case([*run, "--set", "PD301.min_rise=nan"], {}),
            rules_case([*run, "--set", "PD301.min_rise=-1"], {}),
            rules_case([*run, "--set", "PD301.persistence=1e999"], {}),
            rules_case([*run, "--set", "PD301.bogus=\rX"], {}),
            rules_case([*run, "--rules", "myrules"], {"myrules/R.yaml": b""}),
            rules_case([*run, "--rules", "myrules"], {"myrules/R.yaml": _dump(pd301)}),
            rules_case([*run, "--rules", "myrules"], {"myrules/R.yaml": _dump(dict(fresh, evidence="{rise.__class__}"))}),
            rules_case([*run, "--rules", "myrules"], {"myrules/R.yaml": _dump(dict(fresh, evidence="{0} {"))}),
            rules_case([*run, "--json", "--rules", "myrules"], {"myrules/R.yaml": _dump(dict(fresh, params={**pd301.get("params", {}), "min_rise": float("nan")}))}),
            rules_case([*run], {"paramdoctor.yaml": b"rules:\n  PD301: {min_rise: -.inf}\n  disable: 3\n"}),
            rules_case(["rules", "PD901", "--rules", "myrules"], {"myrules/R.yaml": _dump(dict(fresh, params={"min_rise": 10**400}))}),
        ]
    if family == "runfile":
        folder, log = _lightning_log()
        original = (REPO / folder / log).read_bytes() if folder else b""
        header = original.split(b"\n", 1)[0] + b"\n"
        cases = [
            export_case(b'{"format": "paramdoctor.run/v1", "series": {"val/loss": 0.5}}'),
            export_case(b'{"format": "paramdoctor.run/v1", "series": {"val/loss": {"steps": [1], "values": [1e999]}}}'),
            export_case(b'{"format": "paramdoctor.run/v1", "meta": {"n": ' + b"9" * 5000 + b"}}"),
            export_case(b'{"format": "paramdoctor.run/v1", "status": "DONE"}'),
            export_case(b'{"format": "paramdoctor.run/v1", "config": {"optimizer": {"lr": "abc"}}}', extra=["--write", "next.yaml"]),
        ]
        if folder:
            cases += [
                foreign_case(folder, log, b""),
                foreign_case(folder, log, header),
                foreign_case(folder, log, original + b"\xff\xfe\n"),
                foreign_case(folder, log, _NUMBER_RE.sub(b"nan", original)),
                foreign_case(folder, log, _NUMBER_RE.sub(b"1e309", original), extra=["--json"]),
                foreign_case(folder, log, _drop_column(original, 1)),
            ]
        return cases
    if family == "weights":
        import torch

        return [
            weights_case(b"not a checkpoint\n"),
            weights_case(bytes(range(256))),
            weights_case(b""),
            weights_case(None),
            weights_case(small_cnn_state()[: len(small_cnn_state()) // 2]),
            weights_case(_torch_bytes([torch.zeros(2), torch.ones(3)])),
            weights_case(_torch_bytes(3)),
            weights_case(_torch_bytes({"head.weight": torch.zeros(3, 3)})),
            weights_case(_torch_bytes({"state_dict": {"x": torch.zeros(1)}})),
            weights_case(pickle.dumps(Path("x"))),  # a class weights_only refuses
        ]
    if family == "data":
        import numpy as np

        def batch(labels: list) -> bytes:
            return _pickle({"batch_label": "b", "labels": labels, "data": np.zeros((len(labels), 3072), np.uint8)})

        good = {f"imgs/{c}/{i}.png": png_bytes(10, 10, seed=i) for c in ("cat", "dog") for i in range(4)}
        folder = "cifar/cifar-10-batches-py"
        cifar = {f"{folder}/{name}": batch([i % 10, (i + 3) % 10]) for i, name in enumerate(CIFAR_FILES)}
        cifar[f"{folder}/batches.meta"] = cifar_meta(None)
        return [
            data_case(list(FOLDER_TRAINING), {**good, "imgs/dog/3.png": b"junk"}),
            data_case(list(FOLDER_TRAINING), {**good, "imgs/cat/0.png": png_claiming(70_000, 70_000)}),
            data_case(list(FOLDER_TRAINING), {**good, "imgs/cat/0.png": png_claiming(10_000, 10_000)}),
            data_case(list(FOLDER_TRAINING), {"imgs/bad\nclass/notes.txt": b"no images"}),
            data_case(list(FOLDER_TRAINING), {"imgs/cat/0.png": png_bytes(10, 10)}),
            data_case(list(CIFAR_TRAINING), {**cifar, f"{folder}/batches.meta": cifar_meta("few")}),
            data_case(list(CIFAR_TRAINING), {**cifar, f"{folder}/data_batch_2": batch([-1, 0])}),
            data_case(list(CIFAR_TRAINING), {**cifar, f"{folder}/data_batch_2": batch(["cat", 0])}),
        ]
    if family == "alias":
        return [alias_case(bomb_text(10, 6), where) for where in ("config", "override", "rule", "project")]
    return []
