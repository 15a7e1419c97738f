"""``paramdoctor import PATH``: log another tool's training log as an MLflow run.

The file is read and checked completely first (bad input creates nothing in
MLflow); the run then holds the curves under paramdoctor's keys, the file's
settings as params, ``paramdoctor.source`` naming the tool, and the original
log as an artifact. The run id is printed, ready for ``paramdoctor diagnose``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paramdoctor.cli.options import parse_mapping
from paramdoctor.errors import InputError

DEFAULT_EXPERIMENT = "paramdoctor"


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        help="Log another tool's training log (HF trainer_state.json, LLaMA-Factory trainer_log.jsonl, Lightning "
        "metrics.csv, Keras CSV/history, Ultralytics results.csv, any CSV/JSONL with --map) as an MLflow run.",
    )(import_log)


def import_log(
    path: str = typer.Argument(..., metavar="PATH", help="A log file or the tool's output folder."),
    experiment: str = typer.Option(DEFAULT_EXPERIMENT, "--experiment", "-e", help="MLflow experiment (created when missing)."),
    run_name: Optional[str] = typer.Option(None, "--run-name", help="MLflow run name; the log's folder or file name when omitted."),
    run_index: Optional[int] = typer.Option(
        None, "--run-index", metavar="N", help="Which run of a file holding several (0-based; -1 is the last, the default)."
    ),
    maps: Optional[list[str]] = typer.Option(
        None, "--map", metavar="KEY=COLUMN", help="Read paramdoctor KEY from COLUMN, e.g. --map val/acc=eval_top1 (repeatable)."
    ),
) -> int:
    from paramdoctor.importers import load_foreign
    from paramdoctor.importers.to_mlflow import log_record, tracking_uri

    from paramdoctor.sources.resolve import existing_path  # not at the top: it loads numpy, `--help` must not

    mapping = parse_mapping(maps or [])
    if existing_path(path) is None:  # also a name too long for the file system, or ~user of no user
        raise InputError(f"{path}: no such file or folder (give a log file or the folder a tool wrote)")
    record = load_foreign(path, run_index=run_index, mapping=mapping)
    source_file = logged_file(record.meta.get("source_file"), path)
    run_id = log_record(record, experiment=experiment, run_name=run_name, artifact=source_file)
    runs = record.meta.get("runs_in_file", 1)
    which = f" (run {record.meta.get('run_index', 0)} of {runs} in the file)" if runs > 1 else ""
    typer.echo(
        f"imported {record.source} log {source_file}{which} into experiment '{experiment}' at {tracking_uri()}",
        err=True,
    )
    typer.echo(run_id)
    return 0


def logged_file(source_file: object, path: str) -> Path:
    """The file that was read, to keep as the run's artifact: never the folder it was found in.

    Importers name it in ``meta["source_file"]``; a paramdoctor export found in
    a folder (``import runs/x`` holding ``run.json``) does not, and logging the
    folder itself would copy everything beside the log into the run.
    """
    if source_file:
        return Path(str(source_file))
    from paramdoctor.importers import locate_log

    return locate_log(path)
