"""Reading MLflow runs into records, against a real SQLite store."""

from __future__ import annotations

import time

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.config import TrainConfig, to_tree, validate
from paramdoctor.errors import InputError
from paramdoctor.sources import export_run, open_client, record_from_mlflow, records_for_experiment, tracking_uri
from paramdoctor.sources.mlflow_source import series_from_metrics
from paramdoctor.record import RunRecord
from tests.sources.mlflow_runs import healthy_curves, make_run, new_store, overfitting_curves


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    uri, client = new_store(folder)
    config = TrainConfig.model_validate({"trainer": {"max_epochs": 20}, "optimizer": {"lr": 3e-4}})
    ids = {
        "overfit": make_run(client, run_name="overfit-run", config=config, tmp_dir=folder),
        "no_config": make_run(client, run_name="no-config", with_config_artifact=False, config=config, tmp_dir=folder),
        "failed": make_run(client, run_name="failed-run", curves=healthy_curves(5), status="FAILED", tmp_dir=folder),
    }
    return uri, client, ids, config, folder


def test_record_holds_config_params_tags_state_and_full_histories(store):
    uri, client, ids, config, _ = store
    record = record_from_mlflow(ids["overfit"], client)
    assert record.run_id == ids["overfit"]
    assert record.run_name == "overfit-run"
    assert record.experiment == "paramdoctor"
    assert record.status == "FINISHED"
    assert record.source == "paramdoctor"
    assert record.x_unit == "epoch"
    assert record.config == to_tree(config)  # from the config.yaml artifact
    assert record.params["optimizer.lr"] == "0.0003"
    assert record.tags[keys.TAG_MODEL] == "small_cnn"
    curves = overfitting_curves()
    for key, points in curves.items():
        series = record.series[key]
        assert series.steps.tolist() == [float(s) for s, _ in points]
        np.testing.assert_allclose(series.values, [v for _, v in points])
    assert len(record.series[keys.STEP_LOSS]) == 200
    assert record.meta == {
        "num_classes": 10,
        "monitor": "val/acc",
        "mode": "max",
        "stop_reason": "max_epochs",
        "max_epochs": 20,
        "steps_per_epoch": 10,
        "train_samples": 640,
        "best_epoch": 9,
        "best_value": pytest.approx(max(v for _, v in curves[keys.VAL_ACC])),
    }


def test_without_config_artifact_the_params_are_unflattened_into_a_valid_config(store):
    uri, client, ids, config, _ = store
    record = record_from_mlflow(ids["no_config"], client)
    assert validate(record.config) == config
    assert record.meta["max_epochs"] == 20


def test_failed_run_keeps_its_state(store):
    uri, client, ids, _, _ = store
    assert record_from_mlflow(ids["failed"], client).status == "FAILED"


def test_unknown_run_id_is_one_line_input_error(store):
    uri, client, _, _, _ = store
    with pytest.raises(InputError) as err:
        record_from_mlflow("0" * 32, client)
    assert "not found" in str(err.value) and uri in str(err.value) and "\n" not in str(err.value)


def test_bulk_read_matches_single_reads_newest_first(store):
    uri, client, ids, _, _ = store
    records = records_for_experiment("paramdoctor", client)
    mine = [r.run_name for r in records if r.run_id in ids.values()]
    assert mine == ["failed-run", "no-config", "overfit-run"]
    for bulk in records:
        single = record_from_mlflow(bulk.run_id, client)
        assert bulk.to_dict() == single.to_dict()


def test_bulk_read_of_unknown_experiment_names_the_known_ones(store):
    _, client, _, _, _ = store
    with pytest.raises(InputError, match="experiment 'nope' not found .*paramdoctor"):
        records_for_experiment("nope", client)


def test_bulk_read_on_a_store_without_the_bulk_api(tmp_path, monkeypatch):
    """A file store (no get_metric_history_bulk) takes the one-request-per-key path and gives the same data."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run_id = make_run(client, curves=healthy_curves(6), tmp_dir=tmp_path)
    [record] = records_for_experiment("paramdoctor", client)
    assert record.run_id == run_id
    expected = [v for _, v in healthy_curves(6)[keys.VAL_LOSS]]
    assert record.series[keys.VAL_LOSS].values.tolist() == pytest.approx(expected)


def test_a_step_logged_twice_keeps_the_latest_value():
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    series = series_from_metrics([Metric("k", 1.0, now, 1), Metric("k", 5.0, now + 10, 1), Metric("k", 2.0, now, 2)])
    assert series.steps.tolist() == [1.0, 2.0]
    assert series.values.tolist() == [5.0, 2.0]


def test_nan_metric_values_survive_the_round_trip(tmp_path):
    uri, client = new_store(tmp_path)
    curves = healthy_curves(4)
    curves[keys.TRAIN_LOSS][-1] = (4, float("nan"))
    curves[keys.VAL_LOSS][-1] = (4, float("inf"))
    run_id = make_run(client, curves=curves, tmp_dir=tmp_path)
    record = record_from_mlflow(run_id, client)
    assert np.isnan(record.series[keys.TRAIN_LOSS].values[-1])
    assert np.isposinf(record.series[keys.VAL_LOSS].values[-1])


def test_export_round_trips(store, tmp_path):
    _, client, ids, _, _ = store
    record = record_from_mlflow(ids["overfit"], client)
    path = export_run(record, tmp_path / "exports" / "run.json")
    assert RunRecord.load(path).to_dict() == record.to_dict()


def test_missing_local_store_is_refused_and_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent.db")
    with pytest.raises(InputError, match="no MLflow store at"):
        open_client()
    assert not (tmp_path / "absent.db").exists()


def test_tracking_uri_prefers_the_environment_then_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri() == "http://tracking.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking_uri().startswith("sqlite:")


def _log_foreign(client, folder, curves: dict[str, list[tuple[int, float]]], name: str) -> str:
    return make_run(client, run_name=name, curves=curves, with_config_artifact=False, tmp_dir=folder)


def test_a_hugging_face_run_is_renamed_to_paramdoctor_keys(store):
    """HF's MLflow callback logs at the global step: the record says so and uses paramdoctor keys."""
    _, client, _, _, _ = store
    evals = [50, 100, 150, 200]
    curves = {
        "loss": [(s, 2.0 - s / 150) for s in range(10, 201, 10)],
        "learning_rate": [(s, 1e-4) for s in range(10, 201, 10)],
        "epoch": [(s, s / 50) for s in range(10, 201, 10)],
        "eval_loss": [(s, 1.9 - s / 300) for s in evals],
        "eval_accuracy": [(s, 0.5 + s / 1000) for s in evals],
    }
    record = record_from_mlflow(_log_foreign(client, store[4], curves, "hf-run"), client)
    assert record.source == "hf_trainer"
    assert record.x_unit == "step"
    assert record.series[keys.VAL_LOSS].steps.tolist() == [float(s) for s in evals]
    assert "eval_loss" not in record.series


def test_mapping_renames_a_runs_own_metric_names(store):
    _, client, _, _, folder = store
    curves = {"my_val_loss": [(e, 1.0 / e) for e in range(1, 6)], "my_train_loss": [(e, 0.9 / e) for e in range(1, 6)]}
    run_id = _log_foreign(client, folder, curves, "custom-names")
    record = record_from_mlflow(run_id, client, mapping={"val/loss": "my_val_loss", "train/loss": "my_train_loss"})
    assert record.series[keys.VAL_LOSS].values.tolist() == pytest.approx([1.0 / e for e in range(1, 6)])
    with pytest.raises(InputError, match="no metric 'absent'"):
        record_from_mlflow(run_id, client, mapping={"val/loss": "absent"})


def test_bulk_read_takes_the_config_from_each_runs_own_artifact(tmp_path):
    """config.yaml is read from every run's artifact URI (not rebuilt from params), in bulk as for one run."""
    from paramdoctor.config import dump_yaml

    uri, client = new_store(tmp_path / "store")
    ids = []
    for lr in (1e-3, 2e-3):
        run_id = make_run(client, experiment="sweep", run_name=f"lr{lr}", with_config_artifact=False, tmp_dir=tmp_path)
        tree = to_tree(TrainConfig.model_validate({"optimizer": {"lr": lr * 10}}))  # the file says otherwise than params
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "config.yaml").write_text(dump_yaml(tree))
        client.log_artifact(run_id, str(folder / "config.yaml"))
        ids.append(run_id)
    records = {r.run_id: r for r in records_for_experiment("sweep", client)}
    assert [records[i].config["optimizer"]["lr"] for i in ids] == [pytest.approx(1e-2), pytest.approx(2e-2)]
    assert records[ids[0]].params["optimizer.lr"] == "0.001"
    assert record_from_mlflow(ids[1], client).config == records[ids[1]].config
