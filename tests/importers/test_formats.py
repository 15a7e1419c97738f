"""Each tool's log, shaped like the real file, read into paramdoctor keys."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.importers import ImportedFormat, detect_format, load_foreign, locate_log
from tests.importers.helpers import fixture, healthy, overfits


# --- Hugging Face Trainer -----------------------------------------------------------


def test_hf_trainer_state_evaluated_every_epoch_is_epoch_indexed():
    record = load_foreign(fixture("hf_healthy/trainer_state.json"))
    assert record.source == "hf_trainer" and record.x_unit == "epoch"
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3, 4, 5]
    assert record.get(keys.VAL_ACC).values[-1] == pytest.approx(0.9388)  # the last eval_accuracy
    assert len(record.get(keys.STEP_LOSS)) == 25 and len(record.get(keys.STEP_GRAD_NORM)) == 25
    assert record.get(keys.step_lr("default")) is not None
    # train/loss at epoch 1 is the mean of the 5 losses logged during epoch 1
    losses = record.get(keys.STEP_LOSS)
    assert record.get(keys.TRAIN_LOSS).values[0] == pytest.approx(np.mean(losses.values[:5]))
    assert healthy(record)
    assert record.status == "FINISHED"


def test_hf_settings_go_to_params_and_best_checkpoint_to_meta():
    record = load_foreign(fixture("hf_healthy/trainer_state.json"))
    assert record.params["train_batch_size"] == "32"
    assert record.params["num_train_epochs"] == "5"
    assert record.params["logging_steps"] == "10" and record.params["eval_steps"] == "50"
    assert "log_history" not in record.params and "stateful_callbacks" not in record.params
    assert record.meta["best_model_checkpoint"] == "bert-sst2/checkpoint-250"
    assert record.meta["best_metric"] == pytest.approx(0.362177)
    assert record.meta["monitor"] == keys.VAL_LOSS  # best_metric is an eval_loss value
    assert record.meta["steps_per_epoch"] == 50 and record.meta["max_epochs"] == 5
    assert record.meta["peak_lr"] == pytest.approx(1.92e-05)
    assert "num_classes" not in record.meta


def test_hf_output_folder_uses_the_newest_checkpoint_and_evaluations_every_n_steps_are_step_indexed():
    folder = fixture("hf_llm_overfit")
    assert locate_log(folder) == folder / "checkpoint-240" / "trainer_state.json"
    record = load_foreign(folder)
    assert record.x_unit == "step"
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(20, 241, 20))
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == list(range(20, 241, 20))
    assert keys.VAL_ACC not in record.series
    assert overfits(record)
    assert record.meta["best_model_checkpoint"].endswith("checkpoint-120")
    assert record.run_name == "hf_llm_overfit"


def test_hf_checkpoint_folder_of_an_unfinished_run():
    record = load_foreign(fixture("hf_llm_overfit/checkpoint-120"))
    assert record.status == "UNKNOWN" and record.get(keys.VAL_LOSS).steps[-1] == 120


# --- LLaMA-Factory ----------------------------------------------------------------


def test_llamafactory_log_is_step_indexed_and_overfits():
    record = load_foreign(fixture("llamafactory_out"))
    assert record.source == "llamafactory" and record.x_unit == "step"
    assert record.get(keys.VAL_LOSS).steps.tolist() == [25, 50, 75, 100, 125, 150]
    assert record.get(keys.step_lr("default")).values.max() == pytest.approx(0.000199452)
    assert record.meta["max_steps"] == 150 and record.status == "FINISHED"
    assert overfits(record)


def test_appended_runs_give_the_last_by_default_and_run_index_picks_one():
    path = fixture("llamafactory_two_runs.jsonl")
    last = load_foreign(path)
    first = load_foreign(path, run_index=0)
    also_first = load_foreign(path, run_index=-2)
    assert last.meta["runs_in_file"] == 2 and last.meta["run_index"] == 1
    assert first.meta["run_index"] == 0 and also_first.meta["run_index"] == 0
    assert first.get(keys.VAL_LOSS).steps.tolist() == [15, 30, 45, 60]
    assert last.get(keys.VAL_LOSS).steps.tolist() == [25, 50, 75, 100, 125, 150]
    assert healthy(first) and overfits(last)


# --- Lightning ----------------------------------------------------------------------


def test_lightning_metrics_csv_with_epoch_suffixes():
    record = load_foreign(fixture("lightning_overfit"))  # finds lightning_logs/version_0/metrics.csv
    assert record.source == "lightning" and record.x_unit == "epoch"
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(1, 13))
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == list(range(1, 13))  # train_loss_epoch
    assert len(record.get(keys.STEP_LOSS)) == 48  # train_loss_step every 10 steps
    assert record.get(keys.TRAIN_ACC) is not None and record.get(keys.VAL_ACC) is not None
    assert record.get(keys.step_lr("default")).values[0] == pytest.approx(1e-3)
    assert record.params["lr"] == "0.001" and record.meta["max_epochs"] == 12  # from hparams.yaml
    assert overfits(record)


def test_lightning_validation_twice_per_epoch_is_step_indexed():
    record = load_foreign(fixture("lightning_val_half_epoch/metrics.csv"))
    assert record.x_unit == "step"
    val_steps = record.get(keys.VAL_LOSS).steps.tolist()
    assert len(val_steps) == 8 and val_steps[:2] == [19, 39]
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == val_steps
    assert healthy(record)


# --- Keras --------------------------------------------------------------------------


def test_keras_csvlogger_healthy_run():
    record = load_foreign(fixture("keras_healthy.log"))
    assert record.source == "keras" and record.x_unit == "epoch"
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == list(range(1, 11))  # epoch 0 -> 1
    assert record.get(keys.TRAIN_ACC) is not None and record.get(keys.VAL_ACC) is not None
    assert record.get(keys.epoch_lr("default")).values[0] == pytest.approx(0.001)
    assert healthy(record)


def test_keras_appended_csv_holds_two_runs():
    path = fixture("keras_appended.csv")
    assert load_foreign(path).meta["runs_in_file"] == 2
    assert len(load_foreign(path).get(keys.VAL_LOSS)) == 10
    first = load_foreign(path, run_index=0)
    assert len(first.get(keys.VAL_LOSS)) == 15 and overfits(first)


def test_keras_history_json_overfits():
    record = load_foreign(fixture("keras_history_overfit.json"))
    assert detect_format(fixture("keras_history_overfit.json")) is ImportedFormat.KERAS_HISTORY
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(1, 16))
    assert overfits(record)


# --- Ultralytics --------------------------------------------------------------------


def test_ultralytics_classification_with_padded_headers():
    record = load_foreign(fixture("ultralytics_cls"))
    assert record.source == "ultralytics" and record.x_unit == "epoch"
    assert record.get(keys.VAL_ACC).steps.tolist() == list(range(1, 11))  # already 1-based
    assert record.get(keys.VAL_ACC).values[0] == pytest.approx(0.56173)
    assert record.params["lr0"] == "0.01" and record.meta["max_epochs"] == 10  # from args.yaml
    assert healthy(record)


def test_ultralytics_detection_sums_loss_components():
    record = load_foreign(fixture("ultralytics_detect_overfit/results.csv"))
    first = record.get(keys.TRAIN_LOSS).values[0]
    box, cls, dfl = 1.4 / np.e ** (1 / 8) + 0.4, 2.5 / np.e ** (1 / 6) + 0.3, 1.3 / np.e ** (1 / 10) + 0.8
    assert first == pytest.approx(box + cls + dfl, rel=1e-4)
    assert keys.VAL_ACC not in record.series
    assert overfits(record)


# --- generic files and mapping --------------------------------------------------------


def test_generic_jsonl_with_recognised_names():
    record = load_foreign(fixture("generic_epochs.jsonl"))
    assert record.source == "jsonl" and record.x_unit == "epoch"
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(1, 9))
    assert overfits(record)


def test_csv_with_unknown_names_needs_a_mapping():
    path = fixture("custom_curves.csv")
    from paramdoctor.errors import InputError

    with pytest.raises(InputError, match="no training curves found.*--map"):
        load_foreign(path)
    record = load_foreign(
        path, mapping={"train/loss": "my_train_objective", "val/loss": "holdout_objective", "val/acc": "holdout_top1"}
    )
    assert record.source == "csv" and record.x_unit == "step"
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(100, 801, 100))
    assert record.get(keys.VAL_ACC).values[-1] == pytest.approx(0.86526)  # holdout_top1 on the last line
    assert healthy(record)


def test_mapping_wins_over_recognised_names():
    record = load_foreign(fixture("keras_healthy.log"), mapping={"val/loss": "loss"})
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx(
        load_foreign(fixture("keras_healthy.log")).get(keys.TRAIN_LOSS).values.tolist()
    )


def test_mapping_to_a_missing_column_names_the_columns():
    from paramdoctor.errors import InputError

    with pytest.raises(InputError, match=r"no column 'top1'.*val_accuracy"):
        load_foreign(fixture("keras_healthy.log"), mapping={"val/acc": "top1"})
    with pytest.raises(InputError, match="not a paramdoctor metric key"):
        load_foreign(fixture("keras_healthy.log"), mapping={"accuracy": "val_accuracy"})


# --- detection by content ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hf_healthy/trainer_state.json", ImportedFormat.HF_TRAINER_STATE),
        ("llamafactory_two_runs.jsonl", ImportedFormat.LLAMAFACTORY_LOG),
        ("lightning_val_half_epoch/metrics.csv", ImportedFormat.LIGHTNING_CSV),
        ("keras_healthy.log", ImportedFormat.KERAS_CSV),
        ("keras_history_overfit.json", ImportedFormat.KERAS_HISTORY),
        ("ultralytics_cls/results.csv", ImportedFormat.ULTRALYTICS_CSV),
        ("ultralytics_detect_overfit/results.csv", ImportedFormat.ULTRALYTICS_CSV),
        ("custom_curves.csv", ImportedFormat.CSV),
        ("generic_epochs.jsonl", ImportedFormat.JSONL),
    ],
)
def test_detection_ignores_the_file_name(tmp_path, name, expected):
    renamed = tmp_path / "exported.txt"
    shutil.copy(fixture(name), renamed)
    assert detect_format(renamed) is expected
    assert expected.tool == load_foreign(renamed, mapping=_custom_mapping(name)).source


def _custom_mapping(name: str) -> dict[str, str] | None:
    return {"val/loss": "holdout_objective"} if name == "custom_curves.csv" else None


def test_llamafactory_folder_with_trainer_state_is_reported_as_llamafactory(tmp_path):
    shutil.copy(fixture("hf_healthy/trainer_state.json"), tmp_path / "trainer_state.json")
    shutil.copy(fixture("llamafactory_out/trainer_log.jsonl"), tmp_path / "trainer_log.jsonl")
    record = load_foreign(tmp_path)
    assert record.source == "llamafactory" and record.meta["format"] == "hf_trainer_state"


def test_a_paramdoctor_export_is_read_back(tmp_path):
    record = load_foreign(fixture("keras_healthy.log"))
    path = record.save(tmp_path / "run.json")
    again = load_foreign(path)
    assert again.source == "keras" and again.get(keys.VAL_LOSS).values.tolist() == record.get(keys.VAL_LOSS).values.tolist()


def test_generic_jsonl_of_hf_on_log_dumps_is_step_indexed(tmp_path):
    """A callback that writes each HF ``logs`` dict as a line: fractional epochs, training and eval lines apart."""
    lines = []
    for step in range(10, 121, 10):
        lines.append({"loss": 2.0 - step / 100, "learning_rate": 1e-4, "epoch": step / 80, "step": step})
        if step % 40 == 0:
            lines.append({"eval_loss": 1.9 - step / 120, "eval_accuracy": 0.5 + step / 1000, "epoch": step / 80, "step": step})
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(__import__("json").dumps(line) + "\n" for line in lines))
    record = load_foreign(path)
    assert record.source == "jsonl" and record.x_unit == "step"
    assert record.get(keys.VAL_LOSS).steps.tolist() == [40, 80, 120]
    assert len(record.get(keys.STEP_LOSS)) == 12
    assert record.get(keys.TRAIN_LOSS).values.tolist() == pytest.approx([1.75, 1.35, 0.95])


def test_hand_written_csv_names_with_spaces_and_hyphens(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("Epoch,Train Loss,Val Loss,val-acc\n5,1.0,1.1,0.5\n6,0.7,0.9,0.6\n7,0.5,0.8,0.7\n")  # a resumed run
    record = load_foreign(path)
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [1.0, 0.7, 0.5]
    assert record.get(keys.VAL_ACC).values.tolist() == [0.5, 0.6, 0.7]
    assert record.x_unit == "epoch" and record.get(keys.VAL_LOSS).steps.tolist() == [5, 6, 7]
