"""``paramdoctor train [CONFIG.yaml] [key=value ...]``: one instrumented fine-tuning run."""

from __future__ import annotations

import signal
import time
from typing import Optional

import typer


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        context_settings={"allow_extra_args": False},
        help="Train CONFIG (YAML; built-in defaults when omitted) with key=value overrides, logged to MLflow.",
    )(train)


def train(
    args: Optional[list[str]] = typer.Argument(
        None, metavar="[CONFIG.yaml] [KEY=VALUE]...", help="A config file and/or dotted overrides, e.g. optimizer.lr=3e-4"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit; nothing is trained or logged."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display; print only the summary."),
) -> int:
    from paramdoctor.config import dump_yaml, load_config
    from paramdoctor.errors import ConfigError

    args = list(args or [])
    config_path = None
    if args and "=" not in args[0]:
        config_path = args.pop(0)
    stray = [a for a in args if "=" not in a]
    if stray:
        raise ConfigError(f"argument {stray[0]!r}: expected key=value (only the first argument may be a config file)")
    config = load_config(config_path, args)

    from rich.console import Console

    console = Console()
    if dry_run:
        text = dump_yaml(config, annotate=True)  # a null backbone_lr shows what it resolves to, as a comment
        if console.is_terminal:
            from rich.syntax import Syntax

            console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
        else:  # piped: exactly the YAML, so `train --dry-run > my.yaml` gives a config file
            typer.echo(text, nl=False)
        return 0

    from paramdoctor.cli.train_display import ProgressDisplay, print_summary
    from paramdoctor.training import fit

    display = ProgressDisplay(console, enabled=not quiet)
    t0 = time.perf_counter()
    # SIGTERM (a scheduler or `kill`) ends the run like Ctrl-C: flushed, marked KILLED, nothing lost
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with display:
            result = fit(config, listener=display)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the run is marked KILLED in MLflow; everything logged so far is kept[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(console, config, result, wall_s=time.perf_counter() - t0)
    return 0 if result.status == "FINISHED" else 1
