"""``paramdoctor import`` into a fresh SQLite store, read back through MlflowClient."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from paramdoctor import keys
from paramdoctor.cli import import_cmd
from paramdoctor.errors import InputError
from paramdoctor.importers import load_foreign
from paramdoctor.importers.to_mlflow import METRICS_PER_BATCH, log_record, prepare
from paramdoctor.keys import TAG_X_UNIT
from paramdoctor.record import RunRecord, Series
from tests.importers.helpers import FIXTURES


def _app() -> typer.Typer:
    app = typer.Typer()
    import_cmd.register(app)

    @app.callback()
    def _root() -> None:
        """Several commands: keep `import` a subcommand."""

    return app


def _invoke(*args: str):
    return CliRunner().invoke(_app(), ["import", *args])


def test_import_hf_checkpoint_folder(store_uri):
    result = _invoke(str(FIXTURES / "hf_llm_overfit"), "--experiment", "llm", "--run-name", "qwen-lora")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    client = MlflowClient(store_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "qwen-lora"
    assert client.get_experiment(run.info.experiment_id).name == "llm"
    assert run.data.tags[keys.TAG_SOURCE] == "hf_trainer" and run.data.tags[TAG_X_UNIT] == "step"
    assert run.data.tags[keys.TAG_MONITOR] == keys.VAL_LOSS
    assert run.data.params["train_batch_size"] == "32" and run.data.params["eval_steps"] == "20"
    val = sorted(client.get_metric_history(run_id, keys.VAL_LOSS), key=lambda m: m.step)
    assert [m.step for m in val] == list(range(20, 241, 20))
    expected = load_foreign(FIXTURES / "hf_llm_overfit").get(keys.VAL_LOSS).values.tolist()
    assert [m.value for m in val] == pytest.approx(expected)
    assert len(client.get_metric_history(run_id, keys.STEP_LOSS)) == 48
    assert [a.path for a in client.list_artifacts(run_id)] == ["trainer_state.json"]


def test_import_picks_a_run_and_maps_columns(store_uri):
    result = _invoke(str(FIXTURES / "llamafactory_two_runs.jsonl"), "--run-index", "0")
    assert result.exit_code == 0, result.output
    run = MlflowClient(store_uri).get_run(result.stdout.strip().splitlines()[-1])
    assert run.data.tags["paramdoctor.import.run_index"] == "0" and run.data.tags["paramdoctor.import.runs_in_file"] == "2"
    assert run.info.run_name == "llamafactory_two_runs"
    assert "run 0 of 2" in result.stderr

    result = _invoke(str(FIXTURES / "custom_curves.csv"), "--map", "val/loss=holdout_objective", "--map", "train/loss=my_train_objective")
    assert result.exit_code == 0, result.output
    run = MlflowClient(store_uri).get_run(result.stdout.strip().splitlines()[-1])
    assert set(run.data.metrics) == {keys.VAL_LOSS, keys.TRAIN_LOSS} and run.data.tags[keys.TAG_SOURCE] == "csv"


def test_bad_input_creates_nothing(tracking_uri, tmp_path):
    bad = tmp_path / "trainer_state.json"
    bad.write_text('{"log_history": [{"step": 1, "loss": "oops"}]}')
    result = _invoke(str(bad))
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "'loss' is 'oops'" in str(result.exception)
    assert not Path(tmp_path / "mlflow.db").exists()  # the store was never opened
    result = _invoke(str(FIXTURES / "custom_curves.csv"), "--map", "val/loss")
    assert isinstance(result.exception, InputError) and "expected KEY=COLUMN" in str(result.exception)
    assert not Path(tmp_path / "mlflow.db").exists()


def test_metrics_go_in_batches_of_at_most_1000(store_uri):
    steps = range(1, 2501)
    record = RunRecord(
        series={keys.STEP_LOSS: Series(list(steps), [1.0 / s for s in steps]), keys.VAL_LOSS: Series([1, 2], [1.0, float("nan")])},
        params={f"p{i}": str(i) for i in range(150)},
        source="jsonl",
        x_unit="epoch",
    )
    prepared = prepare(record)
    assert len(prepared.metrics) == 2502 and METRICS_PER_BATCH == 1000
    client = MlflowClient(store_uri)
    run_id = log_record(record, experiment="big", client=client)
    run = client.get_run(run_id)
    assert len(run.data.params) == 150
    assert len(client.get_metric_history(run_id, keys.STEP_LOSS)) == 2500
    val = sorted(client.get_metric_history(run_id, keys.VAL_LOSS), key=lambda m: m.step)
    assert str(val[1].value) == "nan"  # a diverged value stays evidence


def test_fractional_positions_are_refused_before_anything_is_created(tracking_uri, tmp_path):
    record = RunRecord(series={keys.VAL_LOSS: Series([0.5, 1.0], [1.0, 0.9])}, source="csv")
    with pytest.raises(InputError, match="not a whole epoch number"):
        log_record(record, experiment="x")
    assert not Path(tmp_path / "mlflow.db").exists()


def test_import_tensorboard_folder_with_two_eval_sets(store_uri):
    result = _invoke(str(FIXTURES / "hf_two_eval_sets" / "runs"), "--experiment", "glue")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    client = MlflowClient(store_uri)
    run = client.get_run(run_id)
    assert run.data.tags[keys.TAG_SOURCE] == "hf_trainer" and run.data.tags["paramdoctor.import.format"] == "tensorboard"
    assert run.data.tags["paramdoctor.import.eval_sets"] == "mnli,mnli-mm"
    assert {"val/mnli/loss", "val/mnli/acc", "val/mnli-mm/loss", "val/mnli-mm/acc"} <= set(run.data.metrics)
    history = sorted(client.get_metric_history(run_id, "val/mnli-mm/acc"), key=lambda m: m.step)
    assert [(m.step, round(m.value, 4)) for m in history] == [(2, 0.695), (4, 0.73)]
    assert run.data.params["learning_rate"] == "0.002"
    [artifact] = client.list_artifacts(run_id)
    assert artifact.path.startswith("events.out.tfevents.")


def test_import_detection_log_keeps_its_monitor(store_uri):
    result = _invoke(str(FIXTURES / "detectron2_out"))
    assert result.exit_code == 0, result.output
    run = MlflowClient(store_uri).get_run(result.stdout.strip().splitlines()[-1])
    assert run.data.tags[keys.TAG_MONITOR] == "val/bbox_AP" and run.data.tags[keys.TAG_MODE] == "max"
    assert run.data.tags[keys.TAG_SOURCE] == "detectron2" and "val/bbox_AP50" in run.data.metrics


def test_a_folder_holding_an_export_logs_the_export_file_and_leaves_no_failed_run(store_uri, tmp_path, capsys):
    """`import DIR` where DIR holds run.json: the artifact is run.json, not DIR (logging '.' used to fail half-way)."""
    from paramdoctor.cli.app import main

    export = RunRecord(series={keys.VAL_LOSS: Series([1, 2, 3], [1.0, 0.8, 0.7])}, run_name="exported")
    export.save(tmp_path / "run.json")
    (tmp_path / "notes.txt").write_text("beside the log; must not be copied into the run")
    assert main(["import", "."]) == 0, capsys.readouterr().err
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    client = MlflowClient(store_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id)] == ["run.json"]
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert [r.info.status for r in client.search_runs(experiments)] == ["FINISHED"]


@pytest.mark.parametrize("ref", ["x" * 300, "~no-such-user-here/metrics.csv"])
def test_a_path_no_file_can_have_is_one_error_line(tracking_uri, tmp_path, capsys, ref):
    """Too long for a file name, or the home of no user: one line, exit 2, no store opened (was OSError/RuntimeError)."""
    from paramdoctor.cli.app import main

    assert main(["import", ref]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ref}: no such file or folder") and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()
