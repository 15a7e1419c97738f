"""``paramdoctor tune [CONFIG.yaml] --trials N [options] [key=value ...]``: an Optuna study, judged by the doctor.

Every trial trains the config (the file, or the defaults, plus ``key=value``
overrides) with params from the search space as an MLflow child of the
study's parent run; Optuna's pruner and the doctor (a severe finding on the
partial curves) stop bad trials early. At the end: the best trials, the
pruned ones and why, each key's fANOVA importance, and the best config
written as YAML for ``paramdoctor train``. The study itself lives in an
Optuna storage and can be continued (``--resume``) or shared between
processes: ``--join`` creates it when it is missing and joins it when it
exists, so every worker (several processes, several machines on one
database) runs the same command and all may start at the same moment.
:mod:`paramdoctor.experiments.tune` has the details,
:mod:`paramdoctor.experiments.search_space` the ``--space`` file format.

``--json`` prints one object (``schema_version`` 1)::

    {"schema_version": 1, "study": str, "storage": str (password hidden), "parent_run_id": str,
     "experiment": str, "metric": "val/acc"|"val/loss", "direction": "maximize"|"minimize",
     "sampler": str, "pruner": str, "doctor_prune": bool,
     "space": {key: {"type": "float"|"int"|"categorical", "low", "high", "log", "step", "choices"}},
     "counts": {"complete": int, "pruned": int, "fail": int, "running": int, "waiting": int},
     "pruned_by": {"PD205": int, "optuna:median": int, ...},
     "best": trial|null,
     "importance": {key: float}|null, "importance_note": str|null,
     "best_config_path": str|null, "doctor_check_ms": float|null, "guide_notes": [str],
     "ran": [trial numbers this call ran],
     "trials": [{"number": int, "state": "COMPLETE"|"PRUNED"|"FAIL"|"RUNNING"|"WAITING",
                 "value": float|null, "params": {key: value}, "run_id": str|null,
                 "source": "baseline"|"doctor"|"sampler"|null, "epochs": int|null, "duration_s": float|null,
                 "pruned_by": str|null, "pruned_reason": str|null, "failure": str|null}, ...]}

Exit codes: 0 the study has at least one complete trial, 1 none, 2 bad input
(one line, nothing trained: a bad config, override, ``--space`` entry,
storage, a study that exists without ``--resume``/``--join`` or does not
with ``--resume``, a joined study started with another config or space), 130
interrupted (Ctrl-C or SIGTERM: the trial in flight is marked FAIL and its
run KILLED, the parent run KILLED; the study stays resumable and the line
printed says how).
"""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from paramdoctor.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from paramdoctor.experiments.tune import TrialRow, TuneResult


def register(app: typer.Typer) -> None:
    app.command(
        "tune",
        help=(
            "Search hyperparameters with Optuna: N trials of CONFIG (plus key=value overrides), each an MLflow child "
            "run of the study's parent; Optuna's pruner and the doctor (a divergence, a dead network) stop bad trials "
            "early. Prints the best trials, why trials were pruned and each key's fANOVA importance, and writes the "
            "best config for `paramdoctor train`. Exit 0 a trial completed, 1 none did, 2 bad input, 130 interrupted "
            "(the study stays resumable)."
        ),
    )(tune)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def tune(
    args: Optional[list[str]] = typer.Argument(
        None, metavar="[CONFIG.yaml] [KEY=VALUE]...", help="The base config file (defaults when omitted) and overrides."
    ),
    trials: int = typer.Option(..., "--trials", "-n", min=1, max=100_000, metavar="N",
                               help="Trials to run in this call (a resumed study runs N more)."),
    space: Optional[Path] = typer.Option(
        None, "--space", metavar="SPACE.yaml",
        help="Search space file: dotted key -> {type: float|int|categorical, low, high, log, step, choices}. "
        "Default: LRs, weight decay, batch size, dropout, warmup, label smoothing around the config's values.",
    ),
    sampler: str = typer.Option("tpe", "--sampler", metavar="tpe|cmaes|gp|nsga2|random|doctor",
                                help="doctor: the best trial's prescription next, TPE when it has nothing new."),
    pruner: str = typer.Option("median", "--pruner", metavar="median|hyperband|none", help="Optuna's pruner."),
    doctor_prune: bool = typer.Option(True, "--doctor-prune/--no-doctor-prune",
                                      help="Stop a trial as soon as a severe finding fires on its partial curves."),
    storage: Optional[str] = typer.Option(
        None, "--storage", metavar="URL",
        help="Optuna storage, e.g. sqlite:///tune.db or postgresql://... (default: optuna.db next to the MLflow store).",
    ),
    study: Optional[str] = typer.Option(None, "--study", metavar="NAME", help="Study name (default: a new one)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the existing study --study NAME (it must exist)."),
    join: bool = typer.Option(
        False, "--join",
        help="Create the study --study NAME if it is missing, else join it with the same config and space: start "
        "any number of workers (processes, machines sharing --storage) at once with the same command. They "
        "share one parent run and never run a trial twice.",
    ),
    out: Path = typer.Option(Path("best_config.yaml"), "--out", metavar="FILE.yaml", help="Where to write the best config."),
    sampler_seed: Optional[int] = typer.Option(
        None, "--sampler-seed", min=0, metavar="N",
        help="Seed of the sampler (default: the config's seed; a worker that finds the study made adds its process "
        "id, so workers draw different params).",
    ),
    rules: Optional[list[Path]] = typer.Option(None, "--rules", metavar="DIR", help="Also load the rule files in DIR."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per trial; only the summary."),
) -> int:
    from paramdoctor.engine import load_project_params, load_rules
    from paramdoctor.experiments.search_space import default_space, load_space
    from paramdoctor.experiments.tune import TuneOptions, check_options, run_tune

    options = TuneOptions(trials=trials, sampler=sampler, pruner=pruner, doctor_prune=doctor_prune, storage=storage,
                          study=study, resume=resume, join=join, out=out, seed=sampler_seed)
    check_options(options)
    argv = list(args or [])
    base, label = _base(argv)
    search = load_space(space, base) if space is not None else default_space(base)
    rule_set = load_rules(extra_dirs=list(rules or []))
    project = load_project_params()

    from rich.console import Console

    console = Console(stderr=as_json)
    if not console.is_terminal and not as_json:
        console = Console(width=160)
    started: dict[str, Any] = {}

    def on_start(result: "TuneResult") -> None:
        started["result"] = result
        if not as_json:
            _print_start(console, result, label, trials, quiet, search)

    def on_trial(row: "TrialRow") -> None:
        if not quiet and not as_json:
            _print_trial(console, row)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_tune(base, search, options, rules=rule_set, rule_params=project.params,
                          disable=tuple(project.disable), on_start=on_start, on_trial=on_trial)
    except KeyboardInterrupt:
        begun = started.get("result")
        if begun is None:
            typer.echo("interrupted before the study started", err=True)
        else:
            again = _resume_command(argv, options, begun, space)
            typer.echo(
                f"interrupted: the trial in flight is marked FAIL and its run KILLED; study {begun.study!r} stays in "
                f"{begun.storage}; carry on with: {again}",
                err=True,
            )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

    if as_json:
        from paramdoctor.report import jsonable

        typer.echo(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False))
    else:
        render_summary(console, result)
    return result.exit_code


def _base(argv: list[str]):
    """The base config (a file, or the defaults) with the overrides, and a label for it."""
    from paramdoctor.config import load_config

    ref = argv.pop(0) if argv and "=" not in argv[0] else None
    stray = [a for a in argv if "=" not in a]
    if stray:
        raise ConfigError(f"argument {stray[0]!r}: expected key=value (only the first argument may be a config file)")
    config = load_config(Path(ref) if ref else None, argv)
    return config, (ref or "defaults") + (f" + {len(argv)} override{'s' if len(argv) != 1 else ''}" if argv else "")


def _resume_command(argv: list[str], options: Any, result: "TuneResult", space: Path | None) -> str:
    parts = ["paramdoctor", "tune", *argv, "--trials", str(options.trials)]
    if space is not None:
        parts += ["--space", str(space)]
    parts += ["--sampler", options.sampler, "--pruner", options.pruner]
    if not options.doctor_prune:
        parts.append("--no-doctor-prune")
    # a password stays hidden: add it back; a worker of a shared study rejoins it with --join
    parts += ["--storage", result.storage, "--study", result.study, "--join" if options.join else "--resume"]
    return " ".join(shlex.quote(p) for p in parts)


# --- terminal ------------------------------------------------------------------------------


def _short(key: str) -> str:
    """``optimizer.backbone_lr_ratio`` -> ``backbone_lr_ratio``: the last part names a key well enough in a row."""
    return key.rsplit(".", 1)[-1]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{_short(k)}={_value(v)}" for k, v in params.items())


def _print_start(console: "Console", result: "TuneResult", label: str, trials: int, quiet: bool, space: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    doctor = "on" if result.doctor_prune else "off"
    console.print(
        f"[bold]paramdoctor tune[/] {escape(label)}: study [bold]{escape(result.study)}[/] in {escape(result.storage)}, "
        f"{trials} trial{'s' if trials != 1 else ''}, sampler {result.sampler}, pruner {result.pruner}, doctor pruning {doctor}",
        soft_wrap=True,
    )
    console.print(f"parent run {result.parent_run_id} (experiment {escape(result.experiment)}); "
                  f"objective: best {result.metric} ({result.direction})", highlight=False, soft_wrap=True)
    if quiet:
        return
    table = Table(title=f"search space ({escape(space.source)})", title_justify="left")
    table.add_column("key")
    table.add_column("type")
    table.add_column("range")
    for d in space.dimensions:
        table.add_row(d.key, d.type, escape(d.describe()))
    console.print(table)


def _print_trial(console: "Console", row: "TrialRow") -> None:
    from rich.markup import escape

    head = f"trial {row.number:>3}"
    source = f"[dim]({row.source})[/]" if row.source else ""
    if row.state == "COMPLETE":
        text = f"{head}  [green]{row.value:.4f}[/]  {source} {escape(_params(row.params))}"
    elif row.state == "PRUNED":
        text = (f"{head}  [yellow]pruned by {escape(row.pruned_by or '?')}[/] after {row.epochs or '?'} epoch{'' if row.epochs == 1 else 's'} {source} "
                f"{escape(_params(row.params))}\n           {escape(row.pruned_reason or '')}")
    else:
        text = f"{head}  [red]{row.state.lower()}[/] {source} {escape(_params(row.params))}: {escape(row.failure or '')}"
    console.print(text, highlight=False)


def render_summary(console: "Console", result: "TuneResult") -> None:
    from rich.markup import escape
    from rich.table import Table

    counts = result.counts
    total = len(result.trials)
    console.print(
        f"[bold]study {escape(result.study)}[/]: {total} trials, {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed" + (f", {counts['running']} running elsewhere" if counts["running"] else ""),
        highlight=False,
    )
    top = result.top(5)
    if top:
        table = Table(title=f"best trials (best {escape(result.metric)}, {result.direction})", title_justify="left")
        for name in ("trial", result.metric, "source", "epochs", "run", "params"):
            table.add_column(name, justify="right" if name in ("trial", result.metric, "epochs") else "left",
                             overflow="fold")
        for row in top:
            table.add_row(str(row.number), f"{row.value:.4f}", row.source or "-", str(row.epochs or "-"),
                          (row.run_id or "-")[:12], escape(_params(row.params)))
        console.print(table)
    if result.pruned_by:
        table = Table(title="pruned trials and why", title_justify="left")
        table.add_column("pruned by")
        table.add_column("trials", justify="right")
        table.add_column("example", overflow="fold")
        for reason, n in result.pruned_by.items():
            example = next((t for t in result.trials if t.state == "PRUNED" and (t.pruned_by or "unknown") == reason), None)
            text = f"trial {example.number}: {example.pruned_reason or ''}" if example else ""
            table.add_row(escape(reason), str(n), escape(text))
        console.print(table)
    if result.importance:
        table = Table(title="importance (fANOVA over the complete trials)", title_justify="left")
        table.add_column("key")
        table.add_column("importance", justify="right")
        table.add_column("")
        for key, value in result.importance.items():
            table.add_row(key, f"{value:.3f}", "█" * max(0, round(value * 30)))
        console.print(table)
    elif result.importance_note:
        console.print(f"importance: {escape(result.importance_note)}", highlight=False)
    for note in result.guide_notes:
        console.print(f"[dim]doctor: {escape(note)}[/]", highlight=False)
    if result.doctor_check_ms is not None:
        console.print(f"[dim]doctor pruning checks: {result.doctor_check_ms:.1f} ms per epoch on average[/]", highlight=False)
    if result.best is None:
        console.print("[red]no trial completed[/]: nothing to write; see the failures and pruning reasons above")
    elif result.best_config_path:
        console.print(f"best: trial {result.best.number}, {result.metric} {result.best.value:.4f} "
                      f"(run {result.best.run_id})", highlight=False)
        console.print(f"wrote {escape(result.best_config_path)}; train it with:  paramdoctor train {escape(result.best_config_path)}",
                      highlight=False, soft_wrap=True)
    console.print(f"parent run {result.parent_run_id}; continue the study with --study {escape(result.study)} --resume",
                  highlight=False, soft_wrap=True)
