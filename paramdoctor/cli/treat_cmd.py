"""``paramdoctor treat RUN``: follow the prescription, train it, diagnose the child, repeat.

RUN is anything ``diagnose`` accepts, read by the same resolver and judged by
the same engine and rules. Each round trains the prescribed next config as an
MLflow child of RUN (``mlflow.parentRunId``; tag ``paramdoctor.treat.round``)
and prints a table: per finding of the round before, whether it cleared; the
monitored metric's best value, best epoch and time to best (the sum of
``epoch/time_s`` up to the best epoch), before and after; the child run. With
``--seeds K`` both the current config and the prescription are trained on the
same K seeds and the verdict is a paired t-test (mean difference, 95% CI, p).
The loop itself is :mod:`paramdoctor.experiments.treat`.

A run from another tool is not trained: treat prints the prescription in that
tool's own settings and says so.

``--json`` prints one object (``schema_version`` 1)::

    {"schema_version": 1,
     "run_id": str|null,                        # the treated run
     "metric": "val/acc", "mode": "max",
     "rounds": [{"round": 1,
                 "runs": [child run ids],       # the prescription, one per seed
                 "baseline_runs": [run ids],    # the current config on the same seeds (--seeds > 1), else []
                 "changes": {"optimizer.lr": 0.01, ...},
                 "findings_before": ["PD101", ...], "findings_after": [...],
                 "cleared": [...],              # cleared on every seed
                 "best_before": float|null, "best_after": float|null,   # means over seeds
                 "delta": float|null,           # best_after - best_before
                 "ci": [low, high]|null, "p": float|null,               # --seeds > 1
                 "verdict": "better"|"worse"|"same"|"inconclusive",
                 "best_epoch_before": float|null, "best_epoch_after": float|null,
                 "time_to_best_before_s": float|null, "time_to_best_after_s": float|null}, ...],
     "best_run_id": str|null,
     "status": "healthy"|"improved"|"not_improved"|"cannot_train",
     "stop_reason": str,
     "prescription": {...}}                     # cannot_train only: diagnose --json's prescription

Exit codes: 0 the final run is healthy, 1 findings remain, 2 bad input (one
line), 130 interrupted (Ctrl-C or SIGTERM; the runs already made stay in MLflow).
"""

from __future__ import annotations

import json
import math
import signal
from typing import TYPE_CHECKING, Any, Optional

import typer

from paramdoctor.cli.diagnose_cmd import RUN_HELP, _engine, _Judge, _mlflow_errors_as_input_errors

if TYPE_CHECKING:
    from rich.console import Console

    from paramdoctor.experiments.treat import Round, TreatResult


def register(app: typer.Typer) -> None:
    app.command(
        "treat",
        help=(
            "Treat RUN: train the prescribed config as a child run, diagnose it, repeat; per round which findings "
            "cleared and how the best metric moved. Exit 0 healthy, 1 findings remain, 2 input error, 130 interrupted."
        ),
    )(treat)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def treat(
    run: str = typer.Argument(..., metavar="RUN", help=RUN_HELP, show_default=False),
    rounds: int = typer.Option(3, "--rounds", min=1, metavar="N", help="At most N rounds of prescription, training, diagnosis."),
    seeds: int = typer.Option(
        1, "--seeds", min=1, metavar="K",
        help="Train the current config and the prescription on K seeds each; the verdict is a paired t-test.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the result as one JSON object."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", metavar="NAME", help="MLflow experiment for run names and `latest` (default: paramdoctor)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No training progress display."),
) -> int:
    from rich.console import Console

    from paramdoctor.experiments.treat import treat as run_treatment
    from paramdoctor.report.compare import metric_and_mode
    from paramdoctor.sources.resolve import resolve

    engine = _engine()
    project = engine.load_project_params()
    judge = _Judge(engine, engine.load_rules(), params=project.params, disable=tuple(project.disable))
    with _mlflow_errors_as_input_errors():
        resolved = resolve(run, experiment=experiment)
    record = resolved.record
    console = Console(stderr=as_json)
    show_progress = not quiet and not as_json

    client = resolved.client

    def read(run_id: str):
        nonlocal client
        from paramdoctor.sources.mlflow_source import open_client, record_from_mlflow

        with _mlflow_errors_as_input_errors():
            client = client or open_client()
            return record_from_mlflow(run_id, client)

    def train(config, *, parent_run_id, extra_tags):
        from paramdoctor.cli.train_display import ProgressDisplay
        from paramdoctor.training import fit

        if not show_progress:
            return fit(config, parent_run_id=parent_run_id, extra_tags=extra_tags)
        with ProgressDisplay(console) as display:
            return fit(config, listener=display, parent_run_id=parent_run_id, extra_tags=extra_tags)

    metric = metric_and_mode([record], None)[0]

    def on_round(outcome: "Round") -> None:
        if not as_json:
            _print_round(console, outcome, metric)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_treatment(record, judge=judge, train=train, read=read, rounds=rounds, seeds=seeds, on_round=on_round)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the runs made so far stay in MLflow as children of the treated run[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

    if as_json:
        from paramdoctor.report import jsonable

        payload = result.to_dict()
        if result.status == "cannot_train":
            payload["prescription"] = result.diagnosis.to_dict()["prescription"]
        typer.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))
    elif result.status == "cannot_train":
        _print_cannot_train(console, result, run)
    else:
        _print_end(console, result)
    return result.exit_code


# --- terminal ------------------------------------------------------------------------


def _num(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _print_round(console: "Console", r: "Round", metric: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    changes = ", ".join(f"{k}={v}" for k, v in r.changes.items())
    console.print(f"[bold]round {r.round}[/]: trained " + escape(changes), highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("finding")
    table.add_column("cleared")
    for code in r.findings_before:
        table.add_row(code, "[green]yes[/]" if code in r.cleared else "[red]no[/]")
    for code in r.findings_after:
        if code not in r.findings_before:
            table.add_row(code, "[yellow]new[/]")
    console.print(table)

    numbers = Table(show_header=True)
    numbers.add_column("")
    numbers.add_column("before", justify="right")
    numbers.add_column("after", justify="right")
    mean = f" (mean of {len(r.runs)})" if len(r.runs) > 1 else ""
    numbers.add_row(f"best {metric}{mean}", _num(r.best_before), _num(r.best_after))
    numbers.add_row(f"best epoch{mean}", _num(r.best_epoch_before, ".3g"), _num(r.best_epoch_after, ".3g"))
    numbers.add_row(f"time to best{mean}", _secs(r.time_to_best_before), _secs(r.time_to_best_after))
    console.print(numbers)
    if r.ci is not None:
        p = "-" if r.p is None else f"{r.p:.3g}"
        console.print(
            f"paired over {len(r.runs)} seeds: mean difference {_num(r.delta, '+.4f')} "
            f"(95% CI {r.ci[0]:+.4f} to {r.ci[1]:+.4f}), p={p}: {r.verdict}",
            markup=False, highlight=False,
        )
    else:
        console.print(f"verdict: {r.verdict}" + (f" ({r.delta:+.4f})" if r.delta is not None else ""), highlight=False)
    label = "child run" if len(r.runs) == 1 else "child runs"
    console.print(f"{label}: {', '.join(r.runs)}", markup=False, highlight=False)
    if r.baseline_runs:
        console.print(f"baseline runs: {', '.join(r.baseline_runs)}", markup=False, highlight=False)


def _print_end(console: "Console", result: "TreatResult") -> None:
    if not result.rounds:
        console.print(f"run {result.run_id} is {result.diagnosis.status}: {result.stop_reason}", markup=False, highlight=False)
    else:
        console.print(f"stopped: {result.stop_reason}", markup=False, highlight=False)
    final = result.final
    left = ", ".join(final.codes) if final is not None and final.codes else ""
    console.print(
        f"best run: {result.best_run_id} ({result.status}" + (f"; findings left: {left}" if left else "") + ")",
        markup=False, highlight=False,
    )


def _print_cannot_train(console: "Console", result: "TreatResult", run_ref: str) -> None:
    from rich.table import Table

    from paramdoctor.report.tool import tool_rows, tool_title

    diag = result.diagnosis
    codes = ", ".join(f"{f.code} {f.slug}" for f in diag.findings)
    console.print(f"{run_ref}: {diag.status}" + (f" ({codes})" if codes else ""), markup=False, highlight=False)
    tool = diag.prescription.tool
    if tool is not None and tool.changes:
        table = Table(title=f"prescription {tool_title(tool)}", title_justify="left")
        for name in ("setting", "now", "next", "note"):
            table.add_column(name)
        for row in tool_rows(tool):
            table.add_row(*row)
        console.print(table)
    elif diag.prescription.changes:
        table = Table(title="prescription", title_justify="left")
        for name in ("key", "now", "next"):
            table.add_column(name)
        for change in diag.prescription.changes:
            table.add_row(change.key, str(change.old), str(change.new))
        console.print(table)
    console.print(
        f"treat cannot train this run: {result.stop_reason} (paramdoctor diagnose {run_ref} has the full report)",
        markup=False, highlight=False, soft_wrap=True,
    )
