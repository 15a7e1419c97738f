"""``paramdoctor sync [RUN_ID ...]``: send what runs kept on local disk while their tracking server was away.

Each spool (``.paramdoctor/spool/<run_id>.jsonl`` by default, see
:mod:`paramdoctor.tracking.spool`) is delivered in order to the tracking
server it was written for (``--tracking-uri`` sends it elsewhere), and
deleted only once every operation in it is stored. A spool that a running
trainer still holds is left to that trainer.

Exit codes: 0 every spool delivered (or nothing to send), 1 some writes
remain (the server is still away, or refuses one), 2 bad input (a spool
directory that is not one, an unreadable spool file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paramdoctor.errors import InputError


def register(app: typer.Typer) -> None:
    app.command(
        "sync",
        help=(
            "Send the metrics, tags, statuses and artifacts that runs kept on local disk while the tracking server "
            "was away (all spools, or those of RUN_ID...). Exit 0 all delivered, 1 some remain, 2 input error."
        ),
    )(sync)


def sync(
    run_ids: Optional[list[str]] = typer.Argument(None, metavar="[RUN_ID]...", help="Only these runs' spools."),
    spool_dir: Optional[Path] = typer.Option(
        None, "--spool-dir", metavar="DIR",
        help="Where the spools are (default: $PARAMDOCTOR_SPOOL_DIR, else .paramdoctor/spool here).",
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", metavar="URI",
        help="Send to this tracking server instead of the one each spool was written for.",
    ),
) -> int:
    from paramdoctor.tracking.spool import Spool, resolve_spool_dir, spooled_runs

    root = resolve_spool_dir(spool_dir)
    if root.exists() and not root.is_dir():
        raise InputError(f"spool directory {root} is a file, not a directory (check --spool-dir / PARAMDOCTOR_SPOOL_DIR)")
    for run_id in run_ids or []:
        if not run_id.strip() or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise InputError(f"sync {run_id!r}: not a run id (give the 32-character id of an MLflow run)")
    present = spooled_runs(root)
    wanted = list(dict.fromkeys(run_ids)) if run_ids else present
    if not wanted:
        typer.echo(f"nothing to send: no spools in {root}")
        return 0

    left = 0
    bad: list[str] = []
    for run_id in wanted:
        if run_id not in present:
            typer.echo(f"run {run_id}: nothing spooled in {root}")
            continue
        spool = Spool(root, run_id)
        try:
            if not spool.acquire(blocking=False):
                typer.echo(f"run {run_id}: skipped, a running process is still sending its spool")
                left += 1
                continue
            left += _deliver_one(spool, tracking_uri)
        except InputError as exc:  # an unreadable spool, a store that is not there: the others still go
            typer.echo(f"run {run_id}: {exc}", err=True)
            bad.append(str(exc))
        finally:
            spool.release()
    if bad:
        raise InputError(bad[0] if len(bad) == 1 else f"{bad[0]} (and {len(bad) - 1} more spools not sent)")
    return 1 if left else 0


def _deliver_one(spool, tracking_uri: str | None) -> int:
    """Deliver one acquired spool and say what happened; 1 when writes remain, else 0."""
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.run import resolve_tracking_uri
    from paramdoctor.tracking.spool import deliver, describe
    from paramdoctor.tracking.store import prepare_store, sqlite_path

    run_id = spool.run_id
    uri = tracking_uri or spool.tracking_uri or resolve_tracking_uri()
    if not spool.pending:
        typer.echo(f"run {run_id}: nothing left to send")
        return 0
    local = sqlite_path(uri)
    if local is not None and not local.exists():
        raise InputError(f"no MLflow store at {uri} to send the spool {spool.path} to (give --tracking-uri)")
    first = spool.peek()[1]
    prepare_store(uri, create=False)
    client = MlflowClient(tracking_uri=uri)
    result = deliver(spool, client)
    sent = f"{result.operations} writes ({result.points} metrics)" if result.operations else "nothing"
    for line in result.rejected:  # refused for good by the server (a bad name or value): said, not kept
        typer.echo(f"run {run_id}: refused by the server and dropped: {line}")
    if not result.remaining:
        typer.echo(f"run {run_id}: delivered {sent} to {uri}")
        return 0
    pending = spool.peek()
    what = describe(pending[1]) if pending else describe(first)
    reason = "refused by the server" if result.refused else "the server is still away"
    typer.echo(
        f"run {run_id}: delivered {sent} to {uri}; {result.remaining} writes ({spool.points} metrics) kept in {spool.path}: "
        f"{what} not sent, {reason} ({result.error})"
    )
    return 1
