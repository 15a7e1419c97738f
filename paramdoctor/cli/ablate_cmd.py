"""``paramdoctor ablate [RUN|CONFIG.yaml] [--drop LIST] [--seeds K] [--workers W] [key=value ...]``.

Which ingredients of a recipe earn their place: the recipe is trained as it is
and with each ingredient turned off, over the same K seeds, and every
difference is judged against seed noise (paired t-test, 95% CI; see
:mod:`paramdoctor.experiments.ablate` for the ingredients, the statistics and
the ``--json`` object).

The base recipe is a paramdoctor run's config (a run id, a run name or
`latest`), a config YAML, or the defaults when neither is given; ``key=value``
overrides apply to the base. Exit codes: 0 done, 2 bad input (one line,
nothing trained), 130 interrupted (runs finished so far are kept; the one in
flight and the parent are marked KILLED).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Optional

import typer

from paramdoctor.errors import ConfigError, InputError


def _ingredients_help() -> str:
    from paramdoctor.experiments.ablate import INGREDIENTS

    return "; ".join(f"{i.name} ({i.off})" for i in INGREDIENTS.values())


def register(app: typer.Typer) -> None:
    app.command(
        "ablate",
        help=(
            "Train the recipe (RUN's config, CONFIG.yaml or the defaults, plus key=value overrides) and each "
            "ingredient turned off, over K seeds, as MLflow children of one parent run; say which differences "
            "beat seed noise (paired t-test, 95% CI). Ingredients and their off values: "
            f"{_ingredients_help()}. Writes ablation.png. Exit 0 done, 2 bad input, 130 interrupted."
        ),
    )(ablate)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def ablate(
    args: Optional[list[str]] = typer.Argument(
        None, metavar="[RUN|CONFIG.yaml] [KEY=VALUE]...",
        help="The base recipe (a run id, run name, `latest`, or a config file; defaults when omitted) and overrides.",
    ),
    drop: Optional[str] = typer.Option(
        None, "--drop", metavar="LIST",
        help="Comma-separated ingredients to turn off (default: every one the base has).",
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, max=100, metavar="K", help="Seeds per variant: seed, seed+1, ..."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, metavar="W", help="Train this many runs in parallel processes."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", metavar="NAME", help="MLflow experiment to find a run name or `latest` in."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the result as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per finished run; only the table."),
) -> int:
    from paramdoctor.experiments.ablate import parse_drop, plan

    args = list(args or [])
    names = parse_drop(drop)  # before anything is read or trained
    ref = args.pop(0) if args and "=" not in args[0] else None
    stray = [a for a in args if "=" not in a]
    if stray:
        raise ConfigError(f"argument {stray[0]!r}: expected key=value (only the first argument may be a run or config file)")
    base, label = _base(ref, args, experiment)
    variants, skipped = plan(base, names)
    if len(variants) == 1:
        raise InputError(
            "nothing to ablate: every ingredient asked for is a no-op for this recipe "
            f"({'; '.join(s['ingredient'] + ': ' + s['reason'] for s in skipped)})"
        )

    from rich.console import Console

    from paramdoctor.experiments.ablate import run_ablation

    console = Console(stderr=as_json)
    if not quiet:
        for s in skipped:
            console.print(f"[dim]skipped {s['ingredient']}: {s['reason']}[/]")
        console.print(
            f"[dim]ablating {label}: {len(variants)} variants x {seeds} seed{'s' if seeds > 1 else ''} = {len(variants) * seeds} runs"
            f"{f' on {workers} workers' if workers > 1 else ''}[/]"
        )

    def progress(o) -> None:
        if not quiet:
            value = "-" if o.best_value is None else f"{o.best_value:.4f} @ {o.best_epoch}"
            console.print(f"[dim]  {o.variant} seed {o.seed}: {base.early_stopping.monitor} {value} ({o.status})[/]")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_ablation(base, variants, skipped, seeds=seeds, workers=workers, base_label=label, on_outcome=progress,
                              picture=Path("ablation.png"))
    except KeyboardInterrupt:
        typer.echo("interrupted: the runs finished so far are kept; the one in flight and the parent are marked KILLED", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

    payload = result.to_dict()
    if as_json:
        from paramdoctor.report import jsonable

        typer.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))
    else:
        console = Console()
        if not console.is_terminal:  # piped or logged: wide enough that no cell wraps
            console = Console(width=180)
        render_table(payload, console)
    return 0


def _base(ref: str | None, overrides: list[str], experiment: str | None):
    """The base recipe and a label for it: a config file, a run's config, or the defaults."""
    from paramdoctor.config import apply_overrides, load_config, validate

    if ref is None:
        return load_config(None, overrides), "defaults"
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_config(path, overrides), str(path)
    from paramdoctor.cli.diagnose_cmd import _mlflow_errors_as_input_errors
    from paramdoctor.experiments.ablate import require_config
    from paramdoctor.sources.resolve import resolve

    with _mlflow_errors_as_input_errors():
        resolved = resolve(ref, experiment=experiment)
    record = resolved.record
    tree = apply_overrides(require_config(record, ref), overrides)
    tree.setdefault("experiment", {})
    if isinstance(tree["experiment"], dict):
        tree["experiment"] = {**tree["experiment"], "run_name": None}  # children get their own names
    label = f"run {record.run_name or ''} ({(record.run_id or '')[:8]})".replace(" ()", "")
    return validate(tree, where=f"the config of run {ref}"), label


def render_table(payload: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from paramdoctor.experiments.ablate import FULL, MATTERS

    monitor, mode = payload["monitor"], payload["mode"]
    arrow = "higher" if mode == "max" else "lower"
    table = Table(
        title=f"ablation of {escape(payload['base'])}: best {escape(monitor)} ({arrow} is better), "
        + _seeds_text(payload["seeds"]),
        title_justify="left",
    )
    for col in ("variant", "off", "best (mean ± std)", "Δ vs full [95% CI]", "p", "verdict", "epochs to best", "time to best"):
        table.add_column(col, justify="right" if col in ("p", "epochs to best", "time to best") else "left",
                         no_wrap=col != "off", overflow="fold")
    for row in payload["variants"]:
        d = row["delta"]
        if row["name"] == FULL:
            delta, p, verdict = "-", "-", "reference"
        else:
            delta = "-" if d["mean"] is None else f"{d['mean']:+.4f}"
            if d["ci_low"] is not None:
                delta += f" [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
            p = "-" if d["p_value"] is None else f"{d['p_value']:.3g}"
            verdict = d["verdict"]
            if d["verdict"] == MATTERS:
                verdict = f"[bold]matters[/]: {'worse' if d['effect'] == 'hurts' else 'better'} without"
        table.add_row(
            escape(row["name"]), escape(row["off"] or "-"), _stat(row["best"], ".4f"), delta, p, verdict,
            _stat(row["best_epoch"], ".1f"), _stat(row["time_to_best_s"], ".1f", " s"),
        )
    console.print(table)
    console.print(f"test: {payload['test']}; \"matters\" = the CI excludes 0 (beyond seed noise)")
    for s in payload["skipped"]:
        console.print(f"skipped {escape(s['ingredient'])}: {escape(s['reason'])}")
    console.print(f"parent run {payload['parent_run_id']} (experiment {escape(payload['experiment'])}); picture: ablation.png")


def _seeds_text(seeds: list[int]) -> str:
    return f"1 seed ({seeds[0]})" if len(seeds) == 1 else f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]})"


def _stat(stat: dict[str, Any], spec: str, unit: str = "") -> str:
    if stat["mean"] is None:
        return "-"
    if stat["std"] is None:
        return f"{stat['mean']:{spec}}{unit}"
    return f"{stat['mean']:{spec}} ± {stat['std']:{spec}}{unit}"
