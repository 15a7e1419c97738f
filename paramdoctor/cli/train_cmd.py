"""``paramdoctor train [CONFIG.yaml] [key=value ...]``: one instrumented fine-tuning run.

Started by ``torchrun --nproc-per-node=N -m paramdoctor train ...`` every
process joins the job's process group first (``paramdoctor.training.distributed``);
rank 0 shows progress and the summary, the other ranks train in silence, and
``--resume`` is resolved on rank 0 and handed to the others.
"""

from __future__ import annotations

import signal
import time
from typing import Optional

import typer


def _follower() -> bool:
    """A process of a torchrun job other than rank 0 (before the process group is joined)."""
    import os

    return os.environ.get("RANK", "0").strip() not in ("", "0") and "WORLD_SIZE" in os.environ


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
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        metavar="RUN",
        help="Carry on an interrupted run (id, name or `latest`) from its last complete epoch, in the same MLflow run.",
    ),
) -> int:
    from paramdoctor.config import dump_yaml, load_config
    from paramdoctor.errors import ConfigError

    args = list(args or [])
    if resume is not None:
        return _resume(resume, args, quiet=quiet, dry_run=dry_run)
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
        if _follower():
            return 0  # rank 0 prints the config once for the job
        text = dump_yaml(config, annotate=True)  # a null backbone_lr shows what it resolves to, as a comment
        if console.is_terminal:
            from rich.syntax import Syntax

            console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
        else:  # piped: exactly the YAML, so `train --dry-run > my.yaml` gives a config file
            typer.echo(text, nl=False)
        return 0

    from paramdoctor.training import distributed, fit

    with distributed.joined() as world:
        return _run(
            console, config, quiet, lambda listener, events: fit(config, listener=listener, on_tracking_event=events), world
        )


class _RunIdListener:
    """Passes every event on to the display and remembers the run id (for the resume hint after Ctrl-C)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.run_id: str | None = None

    def on_fit_start(self, **kwargs) -> None:
        self.run_id = kwargs.get("run_id")
        self.inner.on_fit_start(**kwargs)

    def on_step(self, **kwargs) -> None:
        self.inner.on_step(**kwargs)

    def on_epoch_end(self, **kwargs) -> None:
        self.inner.on_epoch_end(**kwargs)


def _run(console, config, quiet: bool, train, world) -> int:
    from rich.markup import escape

    from paramdoctor.cli.train_display import ProgressDisplay, print_summary

    if not world.is_main:
        return _run_silently(train)
    display = ProgressDisplay(console, enabled=not quiet)
    listener = _RunIdListener(display)
    t0 = time.perf_counter()
    # SIGTERM (a scheduler or `kill`) ends the run like Ctrl-C: flushed, marked KILLED, nothing lost
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with display:
            # a tracking server going away or coming back: one line each, above the progress bar
            result = train(listener, lambda event: console.print(f"[yellow]{escape(event.message)}[/]"))
    except KeyboardInterrupt:
        hint = f"; carry on with: paramdoctor train --resume {listener.run_id}" if listener.run_id else ""
        console.print(f"[yellow]interrupted: the run is marked KILLED in MLflow; everything logged so far is kept{hint}[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(console, config, result, wall_s=time.perf_counter() - t0)
    return 0 if result.status == "FINISHED" else 1


def _run_silently(train) -> int:
    """A rank other than 0 of a torchrun job: trains its share and prints nothing (rank 0 speaks for the job)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = train(None, lambda event: None)  # no listener: fit's own silent one
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if result.status == "FINISHED" else 1


def _resume(run_ref: str, args: list[str], *, quiet: bool, dry_run: bool) -> int:
    from rich.console import Console

    from paramdoctor.config import dump_yaml
    from paramdoctor.errors import ConfigError
    from paramdoctor.training import distributed
    from paramdoctor.training.fit import fit
    from paramdoctor.training.resume import RunAlreadyComplete, close_complete_run, resume_point

    if args:
        raise ConfigError(
            f"--resume {run_ref} takes no config or overrides (got {args[0]!r}): a resumed run carries on with the config "
            "it started with; to change settings start a new run from its weights (model.weights=runs:/RUN_ID)"
        )
    with distributed.joined() as world:

        def find_point():
            try:
                return resume_point(run_ref)
            except RunAlreadyComplete as done:
                return close_complete_run(done)

        # rank 0 reads the run and its last.pt (the one machine sure to hold it) and hands both to the others
        found = world.from_main(find_point)
        if isinstance(found, str):  # the run had ended: closed, nothing to train
            if world.is_main:
                typer.echo(found)
            return 0
        point, config = found
        console = Console()
        if dry_run:
            if world.is_main:
                typer.echo(dump_yaml(point.state["config"]), nl=False)
            return 0
        if world.is_main:
            console.print(f"[dim]resuming run {point.run_id} after epoch {point.state['epoch']}[/]")
        return _run(
            console,
            config,
            quiet,
            lambda listener, events: fit(config, listener=listener, resume_from=point, on_tracking_event=events),
            world,
        )
