"""The ``paramdoctor`` command: assembles the command modules.

Each command lives in its own module and imports heavy libraries (torch,
mlflow, matplotlib) inside the function, so ``paramdoctor --help`` and the
commands that only read runs start fast.

Usage errors (an unknown command or option, a missing or malformed value)
are one ``error: ...`` line and exit code 2, like every other input error.
typer 0.2x parses with its own bundled copy of click (``typer._click``), whose
exceptions are not click's; both are caught by class, whichever raised.

Whatever a message quotes (a path, an override, a value from a file), the
printed error is one bounded line: control characters, line breaks and lone
surrogates are shown escaped as ``repr`` shows them (``\\n``, ``\\x00``,
``\\udc80``), and a message longer than :data:`MAX_ERROR_CHARS` is cut with a
marker saying how long it was.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any

import typer

from paramdoctor import __version__
from paramdoctor.errors import ParamDoctorError

app = typer.Typer(
    name="paramdoctor",
    help="Train with best practice, record every curve in MLflow, diagnose the run, prescribe the next config.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"paramdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """paramdoctor: a doctor for training runs."""


_REGISTERED: "weakref.WeakSet[typer.Typer]" = weakref.WeakSet()


def _register() -> None:
    """Add the commands to ``app`` once per app object: in-process callers (tests, benchmarks) call ``main`` many times."""
    if app in _REGISTERED:
        return
    from paramdoctor.cli import commands

    for command in commands.ALL:
        command(app)
    _REGISTERED.add(app)


USAGE_EXIT_CODE = 2


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from typer's bundled click and from click itself, where each exists."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            cls = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


_USAGE_ERRORS = _click_classes("UsageError")  # NoSuchOption, BadParameter, MissingParameter, ... derive from it
_CLICK_ERRORS = _click_classes("ClickException")  # also FileError and the like
_EXITS = (typer.Exit, *_click_classes("Exit"))
_ABORTS = (typer.Abort, *_click_classes("Abort"))
_NO_ARGS_HELP = _click_classes("NoArgsIsHelpError")  # `paramdoctor` or `paramdoctor CMD` with nothing after it


MAX_ERROR_CHARS = 1000
"""Longest error message printed; a longer one (a huge value quoted) is cut with a marker."""


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` as one printable line of at most about ``limit`` characters.

    Every character ``str.isprintable`` refuses (``\\n``, ``\\r``, ``\\t``, other
    control characters, line and paragraph separators, lone surrogates from
    undecodable argv bytes) is written the way ``repr`` writes it.
    """
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(message))
    if len(text) > limit:
        text = f"{text[:limit]}... [cut: {len(text):,} characters in all]"
    return text


def usage_error_line(exc: BaseException) -> str:
    """One line for a click/typer error: what was wrong, and the command's --help to read."""
    try:
        message = exc.format_message()  # type: ignore[attr-defined]
    except Exception:  # a malformed exception must not hide the error behind a traceback
        message = str(exc)
    message = str(message).strip().rstrip(".") or type(exc).__name__
    ctx: Any = getattr(exc, "ctx", None)
    hint = ""
    if isinstance(exc, _USAGE_ERRORS) and ctx is not None:
        hint = f"; try '{ctx.command_path} --help'"
    return f"error: {one_line(message + hint)}"


DISTRIBUTED_COMMANDS = ("train",)
"""The commands a torchrun job of several processes may run: the others would do their work once per process."""


def _torchrun_refusal(argv: list[str]) -> str | None:
    """Why this command must not run in a torchrun job of several processes (None when it may, or outside torchrun)."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or "RANK" not in os.environ or world.strip() in ("", "1"):
        return None
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None or command in DISTRIBUTED_COMMANDS:
        return None
    return one_line(
        f"paramdoctor {command} does not run under torchrun (WORLD_SIZE={world}): only "
        f"{', '.join(DISTRIBUTED_COMMANDS)} trains across processes; run {command} as one plain process"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; a ParamDoctorError or a usage error becomes one line and exit code 2."""
    # MLflow draws a tqdm bar on stderr for every artifact it downloads (a run's telemetry file, a
    # checkpoint): noise between the command's own lines, and it broke the one-line error contract.
    # A user who wants the bars sets the variable themselves.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # and, against a tracking server, "View run ... / View experiment ..." on stdout at every run end,
    # which broke the --json commands' one-object output; paramdoctor prints its own links.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    _register()
    refusal = _torchrun_refusal(sys.argv[1:] if argv is None else argv)
    if refusal:
        typer.echo(f"error: {refusal}", err=True)
        return USAGE_EXIT_CODE
    try:
        result = app(args=argv, standalone_mode=False, prog_name="paramdoctor")
    except ParamDoctorError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        return exc.exit_code
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORTS:
        typer.echo("aborted", err=True)
        return 130
    except _CLICK_ERRORS as exc:
        if isinstance(exc, _NO_ARGS_HELP):  # the help, as typer shows it, and the usage exit code
            typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
        else:
            typer.echo(usage_error_line(exc), err=True)
        return USAGE_EXIT_CODE
    # standalone_mode=False hands back the command's return value: its exit code (diagnose: 0/1)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
