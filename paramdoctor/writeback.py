"""Write a diagnosis back into its MLflow run, where the MLflow UI shows it.

Tags: ``paramdoctor.status`` (``healthy`` | ``findings``) and
``paramdoctor.findings`` (comma-separated rule codes, empty when healthy), so
runs can be filtered with ``tags.`paramdoctor.status` = 'findings'``.

Artifacts go in one folder, ``paramdoctor/``, so they never collide with the
run's own files (``config.yaml``, ``checkpoints/``); a new diagnosis overwrites
the files of the same name: ``diagnosis.json`` (the ``--json`` object),
``diagnosis.md``, ``diagnosis.html`` (self-contained), ``curves.png`` and,
when the run's config is known, ``next_config.yaml``.

Only tags and artifacts are written, through the client: a FINISHED run stays
FINISHED with the same end time (the tests check it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from paramdoctor import keys
from paramdoctor.diagnosis import Diagnosis
from paramdoctor.errors import InputError
from paramdoctor.record import RunRecord

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ARTIFACT_DIR = "paramdoctor"
ARTIFACT_FILES = ("diagnosis.json", "diagnosis.md", "diagnosis.html", "curves.png", "next_config.yaml")


def write_diagnosis(client: "MlflowClient", run_id: str, diag: Diagnosis, record: RunRecord) -> None:
    """Tag the run with the verdict and log the reports under ``paramdoctor/``.

    Raises InputError (one line) when the store refuses, e.g. an artifact store
    this machine cannot reach; the diagnosis itself is unaffected.
    """
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="paramdoctor-writeback-") as tmp:
        folder = Path(tmp)
        write_report_files(folder, diag, record)
        try:
            client.log_artifacts(run_id, str(folder), artifact_path=ARTIFACT_DIR)
            client.log_batch(
                run_id,
                tags=[
                    RunTag(keys.TAG_STATUS, diag.status),
                    RunTag(keys.TAG_FINDINGS, ",".join(f.code for f in diag.findings)),
                ],
            )
        except (MlflowException, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"could not write the diagnosis back to run {run_id} at {client.tracking_uri} ({first}); "
                "use --no-log to skip writing"
            ) from None


def write_report_files(folder: str | Path, diag: Diagnosis, record: RunRecord) -> list[Path]:
    """Write the report files into ``folder`` (used for the write-back, usable on its own); returns their paths."""
    from paramdoctor.config import dump_yaml
    from paramdoctor.report import diagnosis_html, diagnosis_json, diagnosis_markdown, plot_curves

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(record, diag, folder / "curves.png")
    written = [curves]
    for name, text in (
        ("diagnosis.json", diagnosis_json(diag) + "\n"),
        ("diagnosis.md", diagnosis_markdown(diag, curves_image="curves.png", next_config_name="next_config.yaml")),
        ("diagnosis.html", diagnosis_html(diag, curves_png=curves, next_config_name="next_config.yaml")),
    ):
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    if diag.prescription.next_config:
        (folder / "next_config.yaml").write_text(dump_yaml(diag.prescription.next_config), encoding="utf-8")
        written.append(folder / "next_config.yaml")
    return written
