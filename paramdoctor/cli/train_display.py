"""What ``paramdoctor train`` shows: a live progress display and the closing summary."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from paramdoctor.config import TrainConfig


class ProgressDisplay:
    """A FitListener that draws epoch/step progress with loss, val acc, LR and ETA."""

    def __init__(self, console: Console, *, enabled: bool = True, refresh_s: float = 0.25) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.refresh_s = refresh_s
        self._last = 0.0
        self._task = None
        self._steps_per_epoch = 1
        self._val = "-"
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val acc {task.fields[val]}  lr {task.fields[lr]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not self.enabled,
        )

    def __enter__(self) -> "ProgressDisplay":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def on_fit_start(self, *, total_epochs: int, steps_per_epoch: int, run_id: str, device: str) -> None:
        self._steps_per_epoch = steps_per_epoch
        self.console.print(f"[dim]MLflow run {run_id} on {device}: {total_epochs} epochs x {steps_per_epoch} steps[/]")
        self._task = self._progress.add_task(
            "train", total=total_epochs * steps_per_epoch, epoch=1, loss="-", val="-", lr="-"
        )

    def on_step(self, *, epoch: int, step_in_epoch: int, loss, lr: float) -> None:
        now = time.monotonic()
        if self._task is None or now - self._last < self.refresh_s:
            return
        self._last = now
        done = (epoch - 1) * self._steps_per_epoch + step_in_epoch
        self._progress.update(self._task, completed=done, epoch=epoch, loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        val = metrics.get("val/acc", math.nan)
        self._val = f"{val:.3f}" + ("*" if improved else "")
        if self._task is not None:
            self._progress.update(self._task, completed=epoch * self._steps_per_epoch, epoch=epoch, val=self._val)
        if not self.enabled:
            return
        self._progress.console.print(
            f"epoch {epoch:>3}  train loss {metrics['train/loss']:.4f} acc {metrics['train/acc']:.3f}  "
            f"val loss {metrics['val/loss']:.4f} acc {val:.3f}{'  best' if improved else ''}"
        )


def print_summary(console: Console, config: TrainConfig, result, *, wall_s: float) -> None:
    """The closing table: outcome, best epoch and value, stop reason, run id, how to browse it."""
    colour = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}.get(result.status, "white")
    table = Table(title="paramdoctor train", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", f"[{colour}]{result.status}[/]" + (f" ({result.failure})" if result.failure else ""))
    table.add_row("run", f"{result.run_id}" + (f"  ({result.run_name})" if result.run_name else ""))
    table.add_row("experiment", result.experiment)
    table.add_row("dataset / model", f"{config.data.dataset} / {config.model.name}")
    table.add_row("epochs run", f"{result.epochs_run} of {config.trainer.max_epochs}")
    table.add_row("stop reason", result.stop_reason)
    if result.best_epoch is not None:
        table.add_row("best epoch", str(result.best_epoch))
        table.add_row(f"best {result.monitor}", f"{result.best_value:.4f}")
    table.add_row("time", f"{result.duration_s:.1f} s training, {wall_s:.1f} s in all")
    spooled = int(getattr(result, "spooled", 0) or 0)
    if spooled:
        table.add_row(
            "spooled", f"[yellow]{spooled} metrics kept on local disk[/] (server away): paramdoctor sync {result.run_id}"
        )
    console.print(table)
    console.print(f"diagnose it:  [bold]paramdoctor diagnose {result.run_id}[/]")
    # soft_wrap: a URL folded over two lines cannot be clicked or copied
    console.print(f"browse it:    {browse_line(result)}", soft_wrap=True)


def browse_line(result) -> str:
    """Where to look at the run: its page in a known UI, else how to start one on the local store.

    A UI is known from ``PARAMDOCTOR_UI_URL`` or an http(s) tracking URI
    (:func:`paramdoctor.cli.ui_cmd.ui_base_url`); the link opens MLflow's
    model-training view. ``mlflow ui --backend-store-uri http://...`` makes no
    sense (the UI would try to serve a server from a server): a server already has a UI.
    """
    from rich.markup import escape

    from paramdoctor.cli.ui_cmd import DEFAULT_HOST, DEFAULT_PORT, run_url, ui_base_url
    from paramdoctor.errors import InputError
    from paramdoctor.tracking.run import resolve_tracking_uri

    uri = getattr(result, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    experiment_id = getattr(result, "experiment_id", None)
    try:
        base = ui_base_url(uri)
    except InputError as exc:
        return f"[yellow]{escape(str(exc))}[/]"
    if base:
        if experiment_id is None and uri:
            experiment_id = _experiment_of(uri, result.run_id)
        if experiment_id is None:
            return f"[bold]{escape(base)}[/]  (run {result.run_id})"
        return f"[bold]{escape(run_url(base, experiment_id, result.run_id))}[/]"
    local = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    page = run_url(local, experiment_id, result.run_id) if experiment_id is not None else local
    if not uri or uri == resolve_tracking_uri():
        command = "paramdoctor ui"  # here it opens the run's own store
    else:
        command = f"MLFLOW_TRACKING_URI={uri} paramdoctor ui"
    return f"[bold]{escape(command)}[/]  then open {escape(page)}"


def _experiment_of(uri: str, run_id: str) -> str | None:
    """The run's experiment id, asked of the server (None when it cannot say: the line stays useful without it)."""
    try:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a hint only
        return None
