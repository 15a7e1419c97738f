"""``paramdoctor compare RUN RUN ...``: what set the runs apart, what each reached, one picture of all.

Each RUN is anything ``diagnose`` accepts (run id, run name, ``latest``, an
exported run JSON, another tool's log), read by the same resolver; each run is
diagnosed by the same engine and rules, for the status column. The table shows
only the config keys that differ, then per run (or, with ``--group-by KEY``,
per group of runs differing only in KEY, as mean ± std (n)) the metric's best
and final value, the best epoch, the time to the best epoch (the sum of
``epoch/time_s`` up to it), the epochs run, and the doctor's verdict.

The picture (``--out``, default ``compare.png``) overlays train loss, val loss,
the metric and the learning rate. Unless ``--no-log``, it and ``compare.json``
are logged as ``paramdoctor/compare.png`` and ``paramdoctor/compare.json`` to
the first RUN read from MLflow, and a line says which run got them.

``--json`` prints one object (``schema_version`` 1)::

    {"schema_version": 1,
     "metric": "val/acc", "mode": "max",
     "differing_keys": ["optimizer.lr", "seed"],
     "runs": [{"run_id": str|null, "run_name": str|null, "source": "paramdoctor",
               "config_diff": {"optimizer.lr": "0.001", "seed": "1"},   # text; "-" when absent
               "best": float|null, "final": float|null, "best_epoch": float|null,
               "time_to_best_s": float|null, "epochs_run": int|null,
               "status": "healthy"|"findings"|"no_validation"|"interrupted",
               "findings": ["PD401", ...]}, ...],
     "groups": null | [{"name": "group 1", "label": "optimizer.lr=0.001", "config": {"optimizer.lr": "0.001"}, "n": 3,
                        "runs": [run names], "best": {"mean": float|null, "std": float|null},
                        "final": {...}, "best_epoch": {...}, "time_to_best_s": {...}, "epochs_run": {...}}],
     "picture": "compare.png",
     "logged_to": run id | null}

``best_epoch`` is on the run's x axis (an optimizer step for step-indexed
logs). Non-finite numbers are the strings "nan", "inf", "-inf" as in every
paramdoctor JSON; ``std`` is the sample standard deviation, null for n=1.

Exit codes: 0 compared, 2 bad input (one line). Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from paramdoctor.cli.diagnose_cmd import RUN_HELP, _engine, _mlflow_errors_as_input_errors
from paramdoctor.errors import InputError

ARTIFACT_DIR = "paramdoctor"


def register(app: typer.Typer) -> None:
    app.command(
        "compare",
        help=(
            "Compare RUNs: the config keys that differ, best/final metric, best epoch, time to best, "
            "epochs run and verdict per run (or per --group-by group), and compare.png. Exit 0, 2 input error."
        ),
    )(compare)


def compare(
    runs: Optional[list[str]] = typer.Argument(None, metavar="RUN RUN ...", help=RUN_HELP, show_default=False),
    metric: Optional[str] = typer.Option(
        None, "--metric", metavar="KEY", help="The metric to rank by, e.g. val/acc (default: the first run's monitor)."
    ),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", metavar="KEY", help="Group runs that differ only in config KEY (e.g. seed): mean ± std."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the comparison as one JSON object."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log compare.png/compare.json to an MLflow run."),
    out: Path = typer.Option(Path("compare.png"), "--out", metavar="FILE.png", help="Where to write the picture."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", metavar="NAME", help="MLflow experiment for run names and `latest`."
    ),
) -> int:
    refs = list(runs or [])
    if len(refs) < 2:
        raise InputError(f"compare needs at least 2 runs, got {len(refs)}: name them, e.g. `paramdoctor compare RUN_A RUN_B`")
    from paramdoctor.report import compare as cmp
    from paramdoctor.sources.resolve import resolve

    resolved = []
    with _mlflow_errors_as_input_errors():
        for ref in refs:
            resolved.append(resolve(ref, experiment=experiment))
    records = [r.record for r in resolved]
    notes = [f"{ref}: {r.note}" for ref, r in zip(refs, resolved) if r.note]

    metric_key, mode = cmp.metric_and_mode(records, metric)
    if metric is not None and all(r.get(metric_key) is None for r in records):
        raise InputError(f"--metric {metric_key}: no run logged it; pick a curve the runs have, e.g. val/acc or val/loss")
    configs = [cmp.flat_config(r) for r in records]
    if group_by is not None and not any(group_by in c for c in configs):
        known = ", ".join(cmp.differing_keys(configs)) or "none"
        raise InputError(f"--group-by {group_by}: no run has that config key (keys that differ: {known})")
    diff_keys = cmp.differing_keys(configs)
    diagnoses = _diagnose_all(records)
    rows = [cmp.run_row(r, d, metric_key, mode, diff_keys, c) for r, d, c in zip(records, diagnoses, configs)]
    labels = _unique_labels([row.label for row in rows])
    groups = cmp.group_rows(rows, configs, group_by) if group_by is not None else None

    try:
        picture = cmp.plot_compare(records, labels, metric_key, out, groups=groups)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    payload: dict[str, Any] = {
        "schema_version": 1,
        "metric": metric_key,
        "mode": mode,
        "differing_keys": diff_keys,
        "runs": [row.to_dict() for row in rows],
        "groups": [g.to_dict() for g in groups] if groups is not None else None,
        "picture": str(picture),
        "logged_to": None,
    }
    target = next((r for r in resolved if r.origin == "mlflow" and r.record.run_id), None)
    if target is not None and not no_log:
        warning = _log(target.client, target.record.run_id, picture, payload)
        if warning:
            notes.append(warning)
        else:
            payload["logged_to"] = target.record.run_id
            name = target.record.run_name
            notes.append(
                f"logged {ARTIFACT_DIR}/compare.png and {ARTIFACT_DIR}/compare.json to run "
                + (f"{name} ({target.record.run_id})" if name else target.record.run_id)
            )

    if as_json:
        from paramdoctor.report import jsonable

        for note in notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))
    else:
        from rich.console import Console

        console = Console()
        console.print(_table(metric_key, mode, diff_keys, rows, labels, groups, group_by))
        console.print(f"picture: {picture}", markup=False, highlight=False, soft_wrap=True)
        for note in notes:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _diagnose_all(records: list) -> list:
    engine = _engine()
    rule_set = engine.load_rules()
    project = engine.load_project_params()
    params = engine.merge_params(project.params, {})
    return [engine.diagnose(r, rule_set, params, disable=tuple(project.disable)) for r in records]


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return result


def _log(client: Any, run_id: str, picture: Path, payload: dict[str, Any]) -> str | None:
    """Log the picture and the JSON under ``paramdoctor/``; a refusal is a note, never a lost comparison."""
    import shutil

    from mlflow.exceptions import MlflowException

    from paramdoctor.report import jsonable

    with tempfile.TemporaryDirectory(prefix="paramdoctor-compare-") as tmp:
        folder = Path(tmp)
        shutil.copyfile(picture, folder / "compare.png")
        logged = dict(payload, picture=f"{ARTIFACT_DIR}/compare.png", logged_to=run_id)
        (folder / "compare.json").write_text(json.dumps(jsonable(logged), indent=2, allow_nan=False), encoding="utf-8")
        try:
            client.log_artifacts(run_id, str(folder), artifact_path=ARTIFACT_DIR)
        except (MlflowException, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"could not log the comparison to run {run_id} ({first}); use --no-log to skip it"
    return None


# --- the table ---------------------------------------------------------------------


def _table(metric: str, mode: str, diff_keys: list[str], rows: list, labels: list[str], groups: Any, group_by: Any):
    """One column per run (or group), one row per differing key, then the numbers and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    arrow = "↑" if mode == "max" else "↓"
    measures = (f"best {metric}", f"final {metric}", "best epoch", "time to best", "epochs run")
    if groups is None:
        table = Table(title=f"{len(rows)} runs, {escape(metric)} ({arrow} better)")
        table.add_column("")
        for label in labels:
            table.add_column(escape(label), overflow="fold")
        for i, key in enumerate(diff_keys):
            table.add_row(escape(key), *[escape(row.config_diff[key]) for row in rows], end_section=i == len(diff_keys) - 1)
        numbers = [
            [_num(r.best) for r in rows], [_num(r.final) for r in rows], [_num(r.best_epoch, "g") + (" (step)" if r.x_unit == "step" and r.best_epoch is not None else "") for r in rows],
            [_secs(r.time_to_best_s) for r in rows], [_num(r.epochs_run, "g") for r in rows],
        ]
        for name, cells in zip(measures, numbers):
            table.add_row(escape(name), *cells)
        table.add_row("verdict", *[escape(r.status + (f" ({', '.join(r.findings)})" if r.findings else "")) for r in rows])
        return table
    title = f"{len(rows)} runs in {len(groups)} groups by {escape(group_by)}, {escape(metric)} ({arrow} better): mean ± std (n)"
    table = Table(title=title)
    table.add_column("")
    for group in groups:
        table.add_column(f"{group.name} (n={group.n})\n[dim]{escape(', '.join(group.runs))}[/]", overflow="fold")
    split = list(groups[0].config)
    for i, key in enumerate(split):
        table.add_row(escape(key), *[escape(g.config[key]) for g in groups], end_section=i == len(split) - 1)
    specs = (("best", ".4f", ""), ("final", ".4f", ""), ("best_epoch", ".1f", ""), ("time_to_best_s", ".1f", " s"),
             ("epochs_run", ".1f", ""))
    for name, (stat, spec, unit) in zip(measures, specs):
        table.add_row(escape(name), *[_stat(g.stats[stat], g.n, spec, unit) for g in groups])
    verdicts = []
    for group in groups:
        counts: dict[str, int] = {}
        for i in group.members:
            counts[rows[i].status] = counts.get(rows[i].status, 0) + 1
        verdicts.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    table.add_row("verdicts", *verdicts)
    return table


def _num(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _stat(stat: dict[str, float | None], n: int, spec: str, unit: str = "") -> str:
    mean, std = stat.get("mean"), stat.get("std")
    if mean is None:
        return "-"
    return f"{mean:{spec}} ± {std:{spec}}{unit} ({n})" if std is not None else f"{mean:{spec}}{unit} ({n})"
