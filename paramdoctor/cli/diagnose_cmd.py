"""``paramdoctor diagnose RUN``: read a run, name what went wrong, prescribe the next config.

Exit codes: 0 healthy, 1 findings, 2 usage or input error (raised as
ParamDoctorError; ``app.main`` prints its one line), 3 no readable
validation curve (the run cannot be called healthy; the report says what is
missing), 4 interrupted (a RUNNING run whose trainer stopped its heartbeat: no
verdict on half a run, the report prints the resume command). The command returns its
exit code, which ``app.main`` passes on.

Nothing here imports torch; mlflow, matplotlib and the engine are imported
inside the function, so ``diagnose export.json`` starts fast.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator, Optional

import typer

from paramdoctor.cli.options import parse_mapping

from paramdoctor.errors import InputError

if TYPE_CHECKING:
    from paramdoctor.diagnosis import Diagnosis
    from paramdoctor.record import RunRecord

RUN_HELP = (
    "a run id, a run name, `latest`, an exported run JSON, or another tool's log (trainer_state.json, metrics.csv)"
)


WRITE_HELP = (
    "Write the full next config for `paramdoctor train NEXT.yaml`. For a run from another tool "
    "(Hugging Face Trainer, LLaMA-Factory, Lightning, Keras, Ultralytics) also write NEXT.<tool>.yaml beside it, "
    "e.g. next.hf_trainer.yaml: the changes as that tool's settings (a flat YAML mapping to merge into your own "
    "arguments; changes made in code, and notes, as comments)."
)


def register(app: typer.Typer) -> None:
    app.command(
        "diagnose",
        help=(
            "Diagnose RUN: findings with evidence, the next config to try. "
            "Exit 0 healthy, 1 findings, 2 input error, 3 no readable validation curve, "
            "4 interrupted (the trainer died mid-run: resume it)."
        ),
    )(diagnose)


def diagnose(
    run: Optional[str] = typer.Argument(None, metavar="RUN", help=RUN_HELP, show_default=False),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", metavar="NAME",
        help="MLflow experiment for run names and `latest` (default: paramdoctor); without RUN, diagnose all its runs.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print only the diagnosis as one JSON object."),
    write: Optional[Path] = typer.Option(
        None, "--write", metavar="NEXT.yaml", help=WRITE_HELP
    ),
    no_log: bool = typer.Option(False, "--no-log", help="Do not write tags and reports back into the MLflow run."),
    rules: Optional[list[Path]] = typer.Option(
        None, "--rules", metavar="DIR", help="Also load the rule files in DIR (repeatable)."
    ),
    set_params: Optional[list[str]] = typer.Option(
        None, "--set", metavar="CODE.param=VALUE", help="Override a rule parameter, e.g. PD301.min_rise=0.2."
    ),
    run_index: Optional[int] = typer.Option(
        None, "--run-index", min=0, metavar="N", help="Which run of a multi-run log file to read (other tools' logs)."
    ),
    maps: Optional[list[str]] = typer.Option(
        None, "--map", metavar="KEY=COLUMN", help="Read paramdoctor KEY from another name, e.g. val/loss=eval_loss."
    ),
) -> int:
    engine = _engine()
    mapping = parse_mapping(maps or [])
    rule_set = engine.load_rules(extra_dirs=[Path(d) for d in rules or []])
    project = engine.load_project_params()  # paramdoctor.yaml's rules: section, when present
    judge = _Judge(
        engine,
        rule_set,
        params=engine.merge_params(project.params, engine.parse_param_overrides(list(set_params or []))),
        disable=tuple(project.disable),
    )

    if run is None:
        if experiment is None:
            raise InputError(
                "no run given: name a RUN (run id, run name, `latest`, or a path), "
                "or pass --experiment NAME to diagnose every run of an experiment"
            )
        if write is not None or run_index is not None:
            raise InputError(f"--write and --run-index need one RUN, not all of experiment '{experiment}'")
        with _mlflow_errors_as_input_errors():
            return _diagnose_experiment(judge, experiment, mapping, as_json=as_json, log=not no_log)

    from paramdoctor.sources.resolve import resolve

    with _mlflow_errors_as_input_errors():
        resolved = resolve(run, experiment=experiment, run_index=run_index, mapping=mapping)
    record = resolved.record
    diag = judge(record)
    notes = [resolved.note] if resolved.note else []
    resumable = _resume_hint(record)
    if resumable:
        notes.append(resumable)

    written = write_next_config(diag, record, write) if write is not None else None
    tool_written = write_tool_patch(diag, write, run_label=record.run_name or run) if write is not None else None
    if resolved.origin == "mlflow" and not no_log and record.run_id:
        warning = _write_back(resolved.client, record.run_id, diag, record)
        if warning:
            notes.append(warning)

    if as_json:
        from paramdoctor.report import diagnosis_json

        for note in notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(diagnosis_json(diag))
    else:
        from rich.console import Console

        from paramdoctor.report import render_diagnosis

        render_diagnosis(
            diag,
            Console(),
            next_config_path=str(written) if written else None,
            run_ref=run,
            notes=notes,
            tool_patch_path=str(tool_written) if tool_written else None,
        )
    return diag.exit_code


# --- pieces ------------------------------------------------------------------------


def _resume_hint(record: "RunRecord") -> str | None:
    """For a paramdoctor run someone stopped mid-training: the verdict is on part of a run, and it can go on."""
    from paramdoctor import keys

    if record.status != "KILLED" or keys.TAG_CHECKPOINT_DIR not in record.tags or not record.run_id:
        return None
    if record.tags.get(keys.TAG_STOP_REASON) not in (None, "interrupted"):
        return None
    return f"the run was stopped before it ended; this judges the epochs it ran. Carry it on with: paramdoctor train --resume {record.run_id}"


def write_next_config(diag: "Diagnosis", record: "RunRecord", path: Path) -> Path:
    """Validate the prescribed config and write it as YAML that ``paramdoctor train`` accepts."""
    from paramdoctor.config import dump_yaml, validate

    tree = diag.prescription.next_config
    if not tree and not diag.prescription.changes:
        tree = record.config  # healthy, nothing to change: the next run is this one again
    if not tree:
        raise InputError(
            f"--write: run {record.run_name or record.run_id or ''} has no paramdoctor config to build on "
            f"(curves from {record.source}); apply the prescribed changes to your own config by hand"
        )
    config = validate(tree, where=f"--write {path}: the next config")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(config), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--write {path}: cannot write ({exc.strerror or exc})") from None
    return path


def write_tool_patch(diag: "Diagnosis", next_config: Path, *, run_label: str = "") -> Path | None:
    """For a run from another tool, write ``NEXT.<tool>.yaml`` beside ``next_config``; None when there is nothing to say.

    Runs paramdoctor trained, healthy runs, and logs with no tool vocabulary
    (csv, jsonl) get no such file: the paramdoctor config already says it all.
    """
    from paramdoctor.report import shows_tool_terms, tool_patch_path, tool_patch_yaml

    tool = diag.prescription.tool
    if tool is None or not shows_tool_terms(diag):
        return None
    path = tool_patch_path(next_config, tool.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tool_patch_yaml(tool, run=run_label), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--write {path}: cannot write ({exc.strerror or exc})") from None
    return path


def _diagnose_experiment(judge: "_Judge", experiment: str, mapping: dict[str, str], *, as_json: bool, log: bool) -> int:
    from paramdoctor.sources.mlflow_source import iter_records_for_experiment, open_client

    client = open_client()
    records = []
    diagnoses = []
    warnings: list[str] = []
    # each run is judged as it arrives: from a tracking server the next pages are read meanwhile
    for record in iter_records_for_experiment(experiment, client, mapping=mapping):
        records.append(record)
        diag = judge(record)
        diagnoses.append(diag)
        if log and record.run_id:
            warning = _write_back(client, record.run_id, diag, record)
            if warning:
                warnings.append(warning)
    if not records:
        raise InputError(
            f"experiment '{experiment}' at {client.tracking_uri} has no runs (train one with `paramdoctor train`)"
        )
    any_findings = any(d.findings for d in diagnoses)
    status = (
        "findings"
        if any_findings
        else "no_validation"
        if any(d.missing for d in diagnoses)
        else "interrupted"
        if any(d.interrupted for d in diagnoses)
        else "healthy"
    )
    if as_json:
        from paramdoctor.report import jsonable

        for warning in warnings:
            typer.echo(f"note: {warning}", err=True)
        payload = {
            "schema_version": 1,
            "experiment": experiment,
            "status": status,
            "runs": [d.to_dict() for d in diagnoses],
        }
        typer.echo(json.dumps(jsonable(payload), indent=2, allow_nan=False))
    else:
        from rich.console import Console

        from paramdoctor.report import render_summary_table

        console = Console()
        for warning in warnings:
            console.print(f"[yellow]note:[/] {warning}", markup=True)
        rows = [_summary_row(r, d) for r, d in zip(records, diagnoses)]
        n_sick = sum(1 for d in diagnoses if d.findings)
        title = f"experiment {experiment}: {len(records)} runs, {n_sick} with findings"
        render_summary_table(rows, console, title=title)
        if n_sick:
            console.print("details: [bold]paramdoctor diagnose RUN_ID[/]")
    from paramdoctor.diagnosis import EXIT_CODES

    return EXIT_CODES[status]


def _summary_row(record: "RunRecord", diag: "Diagnosis") -> dict[str, str]:
    name = record.run_name or ""
    short = (record.run_id or "")[:8]
    return {
        "run": f"{name} ({short})" if name and short else name or short,
        "state": record.status,
        "verdict": diag.status,
        "findings": ", ".join(f.code for f in diag.findings),
        "best": best_metric_text(record),
    }


def best_metric_text(record: "RunRecord") -> str:
    """``val/acc 0.9312 @ 7``: the monitored metric at its best epoch, or the best val/acc or val/loss seen."""
    import math

    monitor = record.meta.get("monitor")
    value = record.meta.get("best_value")
    epoch = record.meta.get("best_epoch")
    if monitor and isinstance(value, (int, float)) and math.isfinite(value):
        return f"{monitor} {value:.4f}" + (f" @ {epoch}" if epoch is not None else "")
    for key, pick in (("val/acc", max), ("val/loss", min)):
        series = record.get(key)
        if series is None:
            continue
        finite = [(v, s) for s, v in zip(series.steps.tolist(), series.values.tolist()) if math.isfinite(v)]
        if finite:
            best_value, best_step = pick(finite)
            return f"{key} {best_value:.4f} @ {best_step:g}"
    return "-"


def _write_back(client: Any, run_id: str, diag: "Diagnosis", record: "RunRecord") -> str | None:
    """Write the diagnosis into the run; a failure becomes a note, never a lost diagnosis."""
    from paramdoctor.writeback import write_diagnosis

    try:
        write_diagnosis(client, run_id, diag, record)
    except InputError as exc:
        return str(exc)
    return None


# Where the errors of an unreachable or unreadable store come from (only caught around reading runs).
_STORE_ERROR_MODULES = ("mlflow", "sqlalchemy", "sqlite3", "requests", "urllib3")


@contextmanager
def _mlflow_errors_as_input_errors() -> Iterator[None]:
    """A store MLflow cannot read (server down, bad URI, old schema) is one line, not a traceback."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, InputError) or not type(exc).__module__.startswith(_STORE_ERROR_MODULES):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"MLflow could not read the tracking store ({first}); check MLFLOW_TRACKING_URI") from None


class _Judge:
    """The engine with this invocation's rules, parameters and disabled rules bound."""

    def __init__(self, engine: ModuleType, rules: Any, *, params: dict, disable: tuple[str, ...]) -> None:
        self.engine, self.rules, self.params, self.disable = engine, rules, params, disable

    def __call__(self, record: "RunRecord") -> "Diagnosis":
        from paramdoctor.report.tool import attach_tool_prescription

        diag = self.engine.diagnose(record, self.rules, self.params, disable=self.disable)
        return attach_tool_prescription(diag, record)  # runs from other tools: the changes in their own words


def _engine() -> ModuleType:
    try:
        import paramdoctor.engine as engine
    except ImportError as exc:
        raise InputError(f"paramdoctor.engine cannot be imported ({exc}); reinstall paramdoctor") from None
    needed = ("diagnose", "load_rules", "parse_param_overrides", "load_project_params", "merge_params")
    missing = [n for n in needed if not hasattr(engine, n)]
    if missing:
        raise InputError(f"paramdoctor.engine lacks {', '.join(missing)}; reinstall paramdoctor")
    return engine
