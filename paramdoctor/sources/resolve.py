"""Turn what a user types after ``paramdoctor diagnose`` into a run record.

A reference is tried in this order:

1. an existing path: a ``paramdoctor.run/v1`` JSON export, a directory holding
   ``run.json``, or any other file/directory, handed to
   :func:`paramdoctor.importers.load_foreign` (HF ``trainer_state.json``,
   Lightning ``metrics.csv``, ...);
2. ``latest``: the newest training run of the experiment (lr-find sweeps and the
   parents of tune studies and ablations, which hold results, are passed over);
3. an MLflow run id (any experiment);
4. a run name, searched in the experiment, newest first.

Files are checked before MLflow is imported, so diagnosing an export never
opens a tracking store.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from paramdoctor.errors import InputError
from paramdoctor.record import EXPORT_FORMAT, RunRecord

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_EXPERIMENT = "paramdoctor"
LATEST = "latest"
LATEST_LOOKBACK = 100  # how many of the newest runs ``latest`` looks through for a training run
# runs that hold an experiment's results rather than a training run's curves: `latest` passes over them
BOOKKEEPING_KINDS = frozenset({"lr_find", "tune"})


def is_bookkeeping_run(tags: dict[str, str]) -> bool:
    """An lr-find sweep, a tune study's parent or an ablation's parent: no training curves to judge."""
    if tags.get("paramdoctor.kind") in BOOKKEEPING_KINDS:
        return True
    return tags.get("paramdoctor.ablation") == "true" and "paramdoctor.ablation.variant" not in tags
EXPORT_FILENAME = "run.json"

Origin = Literal["mlflow", "export", "foreign"]


@dataclass
class ResolvedRun:
    """A record and where it came from; only ``mlflow`` records can take a write-back."""

    record: RunRecord
    origin: Origin
    note: str | None = None  # e.g. "3 runs are named 'x'; using the newest"
    client: Any = None  # the MlflowClient that read it (mlflow origin only), for writing back


def resolve_run(
    ref: str,
    *,
    experiment: str | None = None,
    client: "MlflowClient | None" = None,
    run_index: int | None = None,
    mapping: dict[str, str] | None = None,
) -> RunRecord:
    """The record ``ref`` names (see the module doc for the order in which references are tried)."""
    return resolve(ref, experiment=experiment, client=client, run_index=run_index, mapping=mapping).record


def resolve(
    ref: str,
    *,
    experiment: str | None = None,
    client: "MlflowClient | None" = None,
    run_index: int | None = None,
    mapping: dict[str, str] | None = None,
) -> ResolvedRun:
    """Like :func:`resolve_run`, also saying where the record came from and any note for the user."""
    ref = ref.strip()
    if not ref:
        raise InputError("empty run reference (give a run id, a run name, `latest` or a path)")
    path = existing_path(ref)
    if path is not None:
        return _from_path(path, run_index=run_index, mapping=mapping)
    if run_index is not None:
        raise InputError(f"--run-index applies to files of other tools, but '{ref}' is not an existing path")
    return _from_mlflow(ref, experiment or DEFAULT_EXPERIMENT, client, mapping)


# --- files ---------------------------------------------------------------------


def existing_path(ref: str) -> Path | None:
    """The existing file or folder ``ref`` names, or None when it names none (then it is a run).

    A reference too long for a file name, or ``~someone`` without a home folder,
    names no file rather than being an error: it may still be a run name.
    """
    try:
        path = Path(ref).expanduser()
    except RuntimeError:  # ~user of no known user
        path = Path(ref)
    try:
        return path if path.exists() else None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None
        raise InputError(f"{ref}: cannot read ({exc.strerror or exc})") from None


def _from_path(path: Path, *, run_index: int | None, mapping: dict[str, str] | None) -> ResolvedRun:
    export = path / EXPORT_FILENAME if path.is_dir() else path
    if export.is_file() and _is_export(export):
        return ResolvedRun(RunRecord.load(export), "export")
    try:
        from paramdoctor.importers import load_foreign
    except ImportError:
        raise InputError(
            f"{path}: not a paramdoctor run export, and paramdoctor.importers (for other tools' logs) is missing "
            "from this installation"
        ) from None
    return ResolvedRun(load_foreign(path, run_index=run_index, mapping=mapping), "foreign")


def _is_export(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if EXPORT_FORMAT.encode() in head:
        return True
    try:  # an export written by another tool, keys in another order
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, a 5000-digit integer
        return False
    return isinstance(data, dict) and data.get("format") == EXPORT_FORMAT


# --- MLflow --------------------------------------------------------------------


def _from_mlflow(
    ref: str, experiment: str, client: "MlflowClient | None", mapping: dict[str, str] | None
) -> ResolvedRun:
    from paramdoctor.sources.mlflow_source import open_client, record_from_mlflow

    client = client or open_client()
    if ref == LATEST:
        exp_id = _experiment_id(client, experiment, ref)
        runs = client.search_runs([exp_id], max_results=LATEST_LOOKBACK, order_by=["attributes.start_time DESC"])
        if not runs:
            raise InputError(
                f"experiment '{experiment}' at {client.tracking_uri} has no runs (train one with `paramdoctor train`)"
            )
        trained = [r for r in runs if not is_bookkeeping_run(r.data.tags)]
        chosen = trained[0] if trained else runs[0]
        skipped = runs.index(chosen)
        note = (
            f"latest: skipped {skipped} newer run{'s' if skipped != 1 else ''} that only hold results "
            f"(lr-find sweeps, tune and ablation parents); using {chosen.info.run_id}"
            if skipped
            else None
        )
        return ResolvedRun(record_from_mlflow(chosen.info.run_id, client, mapping=mapping), "mlflow", note, client)
    if _looks_like_run_id(ref) and _run_exists(client, ref):
        return ResolvedRun(record_from_mlflow(ref, client, mapping=mapping), "mlflow", client=client)
    exp_id = _experiment_id(client, experiment, ref)
    runs = _runs_named(client, exp_id, ref)
    if not runs:
        raise InputError(_not_found(ref, experiment, client.tracking_uri))
    note = None
    if len(runs) > 1:
        note = (
            f"{len(runs)} runs in experiment '{experiment}' are named '{ref}'; "
            f"using the newest ({runs[0].info.run_id})"
        )
    return ResolvedRun(record_from_mlflow(runs[0].info.run_id, client, mapping=mapping), "mlflow", note, client)


def _experiment_id(client: "MlflowClient", experiment: str, ref: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        if ref == LATEST:
            raise InputError(
                f"experiment '{experiment}' not found at {client.tracking_uri} "
                "(name one with --experiment, or train a run first)"
            )
        raise InputError(_not_found(ref, experiment, client.tracking_uri))
    return found.experiment_id


def _runs_named(client: "MlflowClient", experiment_id: str, name: str) -> list:
    if "'" not in name:
        filter_string = f"attributes.run_name = '{name}'"
    elif '"' not in name:
        filter_string = f'attributes.run_name = "{name}"'
    else:  # both quote kinds: filter here instead
        runs = client.search_runs([experiment_id], max_results=1000, order_by=["attributes.start_time DESC"])
        return [r for r in runs if r.info.run_name == name]
    return list(
        client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=100, order_by=["attributes.start_time DESC"]
        )
    )


def _looks_like_run_id(ref: str) -> bool:
    return 8 <= len(ref) <= 64 and all(c in "0123456789abcdefABCDEF-" for c in ref)


def _run_exists(client: "MlflowClient", run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _not_found(ref: str, experiment: str, uri: str) -> str:
    return (
        f"run '{ref}' not found in experiment '{experiment}' at {uri} "
        "(try `paramdoctor diagnose latest` or a run id from the MLflow UI)"
    )
