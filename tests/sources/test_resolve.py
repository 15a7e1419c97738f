"""What `diagnose RUN` accepts: run id, run name, latest, exports, other tools' files."""

from __future__ import annotations

import json
import time

import pytest

from paramdoctor.errors import InputError
from paramdoctor.record import RunRecord, Series
from paramdoctor.sources import record_from_mlflow, resolve, resolve_run
from tests.sources.mlflow_runs import healthy_curves, make_run, new_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resolve")
    uri, client = new_store(folder)
    older = make_run(client, run_name="twin", curves=healthy_curves(4), tmp_dir=folder)
    time.sleep(0.01)  # distinct start times: "newest" must be well defined
    newer = make_run(client, run_name="twin", curves=healthy_curves(5), tmp_dir=folder)
    time.sleep(0.01)
    other_exp = make_run(client, experiment="elsewhere", run_name="far", curves=healthy_curves(3), tmp_dir=folder)
    time.sleep(0.01)
    latest = make_run(client, run_name="last-one", curves=healthy_curves(6), tmp_dir=folder)
    return uri, client, {"older": older, "newer": newer, "other_exp": other_exp, "latest": latest}


@pytest.fixture
def in_store(store, tmp_path, monkeypatch):
    uri, client, ids = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri, client, ids


def test_run_id_from_any_experiment(in_store):
    _, _, ids = in_store
    record = resolve_run(ids["other_exp"], experiment=None)
    assert record.run_id == ids["other_exp"]
    assert record.experiment == "elsewhere"


def test_latest_is_the_newest_run_of_the_experiment(in_store):
    _, client, ids = in_store
    resolved = resolve("latest", experiment=None)
    assert resolved.record.run_id == ids["latest"]
    assert resolved.origin == "mlflow" and resolved.client is not None
    assert resolve_run("latest", experiment="elsewhere").run_id == ids["other_exp"]


def test_ambiguous_name_uses_the_newest_and_says_so(in_store):
    _, _, ids = in_store
    resolved = resolve("twin", experiment="paramdoctor")
    assert resolved.record.run_id == ids["newer"]
    assert resolved.note is not None and "2 runs" in resolved.note and ids["newer"] in resolved.note


def test_unique_name_has_no_note(in_store):
    resolved = resolve("last-one")
    assert resolved.note is None and resolved.record.run_name == "last-one"


def test_unknown_run_is_one_line_naming_experiment_store_and_way_out(in_store):
    uri, _, _ = in_store
    with pytest.raises(InputError) as err:
        resolve_run("abc", experiment=None)
    message = str(err.value)
    assert message == (
        f"run 'abc' not found in experiment 'paramdoctor' at {uri} "
        "(try `paramdoctor diagnose latest` or a run id from the MLflow UI)"
    )


def test_name_from_another_experiment_is_not_found(in_store):
    with pytest.raises(InputError, match="run 'far' not found in experiment 'paramdoctor'"):
        resolve_run("far", experiment=None)


def test_unknown_experiment(in_store):
    with pytest.raises(InputError, match="experiment 'missing' not found"):
        resolve_run("latest", experiment="missing")


def test_reading_creates_no_experiments_or_runs(in_store):
    _, client, _ = in_store
    before = sorted((e.name, len(client.search_runs([e.experiment_id]))) for e in client.search_experiments())
    for ref, exp in (("latest", None), ("abc", None), ("twin", "paramdoctor"), ("latest", "missing")):
        try:
            resolve_run(ref, experiment=exp)
        except InputError:
            pass
    after = sorted((e.name, len(client.search_runs([e.experiment_id]))) for e in client.search_experiments())
    assert after == before


def test_exported_json_file_and_folder(in_store, tmp_path):
    _, client, ids = in_store
    record = record_from_mlflow(ids["newer"], client)
    path = record.save(tmp_path / "export" / "run.json")
    for ref in (str(path), str(path.parent)):
        resolved = resolve(ref)
        assert resolved.origin == "export"
        assert resolved.record.to_dict() == record.to_dict()


def test_export_needs_no_tracking_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/none.db")
    monkeypatch.chdir(tmp_path)
    record = RunRecord(series={"val/loss": Series([1, 2], [1.0, 0.5])}, run_id="x1", status="FINISHED")
    path = record.save(tmp_path / "mine.json")
    assert resolve_run(str(path), experiment=None).run_id == "x1"
    assert not (tmp_path / "none.db").exists()


def test_malformed_export_is_an_input_error(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"format": "paramdoctor.run/v1", "series": {"a": {"steps": [1], "values": ["x"]}}}))
    with pytest.raises(InputError, match="malformed run export"):
        resolve_run(str(path), experiment=None)


@pytest.mark.parametrize("ref", ["r" * 300, "~no-such-user-here/run.json"])
def test_a_reference_no_file_can_have_is_looked_up_as_a_run(in_store, ref):
    """Too long for a file name, or the home of no user: no OSError/RuntimeError, an unknown run like any other."""
    with pytest.raises(InputError, match="not found in experiment"):
        resolve(ref)


def test_other_files_go_to_the_importers(tmp_path):
    """A file that is not an export is another tool's log: paramdoctor.importers reads it (or says it cannot)."""
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss\n0,10,1.0,1.1\n1,20,0.8,0.9\n")
    try:
        import paramdoctor.importers  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="paramdoctor.importers"):
            resolve_run(str(path), experiment=None)
        return
    resolved = resolve(str(path))
    assert resolved.origin == "foreign"
    assert resolved.record.source != "paramdoctor"


def test_run_index_needs_a_file(in_store):
    with pytest.raises(InputError, match="--run-index"):
        resolve("latest", run_index=1)


def test_missing_store_is_refused_without_creating_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no MLflow store at sqlite:"):
        resolve_run("latest", experiment=None)
    assert list(tmp_path.iterdir()) == []


def test_latest_passes_over_runs_that_only_hold_results_and_says_so(tmp_path, monkeypatch):
    # an lr-find sweep or a tune/ablation parent made after the training run used to be what `latest` judged (exit 3)
    uri, client = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    child = make_run(client, run_name="ablation-child", curves=healthy_curves(5), tmp_dir=tmp_path)
    client.set_tag(child, "paramdoctor.ablation", "true")
    client.set_tag(child, "paramdoctor.ablation.variant", "augment")
    bookkeeping = []
    for tags in ({"paramdoctor.kind": "lr_find"}, {"paramdoctor.kind": "tune"}, {"paramdoctor.ablation": "true"}):
        time.sleep(0.01)
        run_id = make_run(client, run_name="results", curves=healthy_curves(2), tmp_dir=tmp_path)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        bookkeeping.append(run_id)
    resolved = resolve("latest", experiment=None)
    assert resolved.record.run_id == child
    assert resolved.note is not None and "skipped 3 newer runs" in resolved.note
    for run_id in bookkeeping:  # still reachable by id
        assert resolve_run(run_id).run_id == run_id
