"""Writing a diagnosis back into its MLflow run, against a real SQLite store."""

from __future__ import annotations

import json

import pytest
import yaml

from paramdoctor import keys
from paramdoctor.config import validate
from paramdoctor.errors import InputError
from paramdoctor.sources import record_from_mlflow
from paramdoctor.writeback import ARTIFACT_DIR, write_diagnosis
from tests.report.diagnoses import healthy_diagnosis, sick_diagnosis
from tests.sources.mlflow_runs import healthy_curves, make_run, new_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("writeback")
    return new_store(folder) + (folder,)


def read_artifact(client, run_id: str, name: str, tmp_path) -> bytes:
    return open(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{name}", dst_path=str(tmp_path)), "rb").read()


def test_finished_run_gets_tags_and_reports_and_stays_finished(store, tmp_path):
    _, client, folder = store
    run_id = make_run(client, run_name="finished", tmp_dir=folder)
    before = client.get_run(run_id).info
    record = record_from_mlflow(run_id, client)
    diag = sick_diagnosis()
    diag.run_id = run_id

    write_diagnosis(client, run_id, diag, record)

    after = client.get_run(run_id)
    assert after.info.status == "FINISHED" == before.status
    assert after.info.end_time == before.end_time
    assert after.data.tags[keys.TAG_STATUS] == "findings"
    assert after.data.tags[keys.TAG_FINDINGS] == "PD401,PD201"
    names = sorted(a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR))
    expected = ("curves.png", "diagnosis.html", "diagnosis.json", "diagnosis.md", "next_config.yaml")
    assert names == [f"{ARTIFACT_DIR}/{n}" for n in expected]
    assert json.loads(read_artifact(client, run_id, "diagnosis.json", tmp_path))["run_id"] == run_id
    assert read_artifact(client, run_id, "curves.png", tmp_path)[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"data:image/png;base64," in read_artifact(client, run_id, "diagnosis.html", tmp_path)
    next_config = yaml.safe_load(read_artifact(client, run_id, "next_config.yaml", tmp_path))
    assert validate(next_config).optimizer.weight_decay == 0.005
    # the run's own artifacts are untouched
    assert "config.yaml" in [a.path for a in client.list_artifacts(run_id)]


def test_healthy_run_has_an_empty_findings_tag_and_a_rediagnosis_overwrites(store, tmp_path):
    _, client, folder = store
    run_id = make_run(client, run_name="healthy", curves=healthy_curves(), tmp_dir=folder)
    record = record_from_mlflow(run_id, client)
    write_diagnosis(client, run_id, sick_diagnosis(), record)
    write_diagnosis(client, run_id, healthy_diagnosis(), record)
    tags = client.get_run(run_id).data.tags
    assert tags[keys.TAG_STATUS] == "healthy"
    assert tags[keys.TAG_FINDINGS] == ""
    assert json.loads(read_artifact(client, run_id, "diagnosis.json", tmp_path))["status"] == "healthy"


def test_running_run_stays_running(store):
    _, client, folder = store
    run_id = make_run(client, run_name="live", curves=healthy_curves(3), status="RUNNING", tmp_dir=folder)
    record = record_from_mlflow(run_id, client)
    assert record.is_running
    write_diagnosis(client, run_id, healthy_diagnosis(), record)
    info = client.get_run(run_id).info
    assert info.status == "RUNNING" and info.end_time is None


def test_a_refused_write_is_one_line(store):
    _, client, folder = store
    run_id = make_run(client, run_name="gone", curves=healthy_curves(3), tmp_dir=folder)
    record = record_from_mlflow(run_id, client)
    client.delete_run(run_id)
    with pytest.raises(InputError) as err:
        write_diagnosis(client, run_id, healthy_diagnosis(), record)
    assert f"could not write the diagnosis back to run {run_id}" in str(err.value)
    assert "--no-log" in str(err.value) and "\n" not in str(err.value)
