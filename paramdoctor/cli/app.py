"""The ``paramdoctor`` command: assembles the command modules.

Each command lives in its own module and imports heavy libraries (torch,
mlflow, matplotlib) inside the function, so ``paramdoctor --help`` and the
commands that only read runs start fast.
"""

from __future__ import annotations

import sys

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


def _register() -> None:
    from paramdoctor.cli import commands

    for command in commands.ALL:
        command(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning ParamDoctorError into one line and exit code 2."""
    _register()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="paramdoctor")
    except ParamDoctorError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return 2
        raise
    # standalone_mode=False hands back the command's return value: its exit code (diagnose: 0/1)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
