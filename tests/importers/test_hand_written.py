"""Logs written by hand in training scripts: pandas CSVs, dicts of lists, lists of per-epoch dicts.

Each fixture is a small inline file in the shape of a real project's log.
"""

from __future__ import annotations

import json

import pytest

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers import ImportedFormat, detect_format, load_foreign
from paramdoctor.importers.names import metric_mode, pick_monitor, table_role
from paramdoctor.importers.to_mlflow import prepare


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _json(tmp_path, data, name: str = "history.json"):
    return _write(tmp_path, name, json.dumps(data, indent=2))


# --- bare split names: pandas to_csv of {"train": losses, "valid": losses} ---------------------------------


def test_pandas_csv_with_bare_split_columns_holds_the_losses(tmp_path):
    path = _write(tmp_path, "losses.csv", ",train,valid\n0,0.35,0.99\n1,0.30,1.09\n2,0.31,1.05\n")
    record = load_foreign(path)
    assert record.source == "csv" and record.x_unit == "epoch"
    assert sorted(record.series) == [keys.TRAIN_LOSS, keys.VAL_LOSS]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [0.35, 0.30, 0.31]
    assert record.get(keys.VAL_LOSS).values.tolist() == [0.99, 1.09, 1.05]
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3]  # one row per epoch; the pandas index is not x


def test_bare_splits_with_an_ep_counter_and_an_unknown_total(tmp_path):
    path = _write(tmp_path, "losses.csv", ",ep,train,valid,total\n0,1,54.9,16.3,71.2\n1,2,54.2,16.2,70.4\n")
    record = load_foreign(path)
    assert sorted(record.series) == [keys.TRAIN_LOSS, keys.VAL_LOSS]
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == [1, 2] and record.get(keys.VAL_LOSS).values.tolist() == [16.3, 16.2]


def test_a_bare_split_name_never_takes_a_role_another_column_has(tmp_path):
    path = _write(tmp_path, "log.csv", "epoch,train_loss,train,val\n1,1.0,7,0.9\n2,0.8,7,0.8\n")
    record = load_foreign(path)
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [1.0, 0.8]  # train_loss, not the column "train"
    assert record.get(keys.VAL_LOSS).values.tolist() == [0.9, 0.8]  # nothing else is the validation loss
    mapped = load_foreign(path, mapping={"val/loss": "train"})
    assert mapped.get(keys.VAL_LOSS).values.tolist() == [7, 7]


def test_a_bare_split_column_of_words_is_not_a_curve(tmp_path):
    path = _write(tmp_path, "log.csv", "epoch,train_loss,val_loss,train\n1,1.0,1.1,yes\n2,0.8,1.0,no\n")
    assert sorted(load_foreign(path).series) == [keys.TRAIN_LOSS, keys.VAL_LOSS]


def test_json_dict_of_bare_split_lists(tmp_path):
    path = _json(tmp_path, {"train": [19.6, 3.6, 2.2], "val": [5.0, 2.5, 2.4]}, "loss_history.json")
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.JSON_HISTORY and record.source == "json"
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [19.6, 3.6, 2.2]
    assert record.get(keys.VAL_LOSS).values.tolist() == [5.0, 2.5, 2.4]
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3]


def test_json_epochs_list_beside_bare_split_lists(tmp_path):
    path = _json(tmp_path, {"epochs": [1, 2, 3], "train": [3775.9, 38.3, 37.0], "val": [16.0, 15.1, 14.9]})
    record = load_foreign(path)
    assert sorted(record.series) == [keys.TRAIN_LOSS, keys.VAL_LOSS]
    assert record.get(keys.TRAIN_LOSS).steps.tolist() == [1, 2, 3]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [3775.9, 38.3, 37.0]


# --- ambiguous names stay an error that says how to map them --------------------------------------------------


def test_ambiguous_numbered_columns_list_the_columns_and_a_mapping(tmp_path):
    path = _write(tmp_path, "losses.csv", ",loss0,loss1,acc0,acc1\n0,1.75,1.76,81.7,79.1\n1,1.65,1.67,84.5,82.0\n")
    with pytest.raises(InputError) as info:
        load_foreign(path)
    message = str(info.value)
    assert message.startswith(f"{path}: no training curves found") and "\n" not in message
    assert "its columns: loss0, loss1, acc0, acc1" in message
    assert "--map train/loss=loss0 --map val/loss=loss1 --map train/acc=acc0 --map val/acc=acc1" in message
    record = load_foreign(path, mapping={"train/loss": "loss0", "val/loss": "loss1", "train/acc": "acc0", "val/acc": "acc1"})
    assert record.get(keys.VAL_LOSS).values.tolist() == [1.76, 1.67] and record.get(keys.VAL_ACC).values.tolist() == [79.1, 82.0]


def test_unknown_columns_without_loss_or_acc_in_their_names_still_get_an_example(tmp_path):
    path = _write(tmp_path, "log.csv", "step,objective,holdout\n1,2.0,2.1\n")
    with pytest.raises(InputError, match=r"its columns: objective, holdout\); .*--map train/loss=objective --map val/loss=holdout"):
        load_foreign(path)


# --- Keras CSVLogger(separator=";") with a title line; other delimiters ------------------------------------------


KERAS_SEMICOLON = (
    "model_history_log\n"
    "epoch;accuracy;loss;val_accuracy;val_loss\n"
    "0;0.41;1.58;0.80;0.65\n"
    "1;0.87;0.40;0.91;0.30\n"
    "2;0.93;0.22;0.93;0.23\n"
)


def test_keras_csvlogger_with_semicolons_and_a_title_line(tmp_path):
    path = _write(tmp_path, "model_history_log.csv", KERAS_SEMICOLON)
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.KERAS_CSV and record.source == "keras"
    assert sorted(record.series) == [keys.TRAIN_ACC, keys.TRAIN_LOSS, keys.VAL_ACC, keys.VAL_LOSS]
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3]  # epoch 0 -> 1
    assert record.get(keys.VAL_LOSS).values.tolist() == [0.65, 0.30, 0.23]
    assert record.get(keys.TRAIN_ACC).values.tolist() == [0.41, 0.87, 0.93]


def test_lines_after_a_title_keep_their_numbers_in_errors(tmp_path):
    path = _write(tmp_path, "log.csv", KERAS_SEMICOLON.replace("0.30", "oops"))
    with pytest.raises(InputError, match=r"line 4: 'val_loss' is 'oops'"):
        load_foreign(path)


def test_tab_separated_log(tmp_path):
    path = _write(tmp_path, "log.tsv", "epoch\ttrain_loss\tval_loss\n1\t1.0\t1.2\n2\t0.8\t1.1\n")
    record = load_foreign(path)
    assert record.get(keys.VAL_LOSS).values.tolist() == [1.2, 1.1] and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2]


def test_hand_written_epoch_csv_is_not_taken_for_keras(tmp_path):
    """Keras always logs ``loss``; a PyTorch script's ``epoch,train_loss,val_loss`` counts epochs from 1."""
    path = _write(tmp_path, "log.csv", "epoch,train_loss,val_loss\n1,1.0,1.2\n2,0.8,1.1\n")
    assert detect_format(path) is ImportedFormat.CSV
    assert load_foreign(path).get(keys.VAL_LOSS).steps.tolist() == [1, 2]


def test_a_title_above_a_comma_header_and_a_single_column_csv(tmp_path):
    titled = _write(tmp_path, "titled.csv", "Training run 3\nepoch,train_loss,val_loss\n1,1.0,1.2\n2,0.8,1.1\n")
    assert load_foreign(titled).get(keys.TRAIN_LOSS).values.tolist() == [1.0, 0.8]
    single = _write(tmp_path, "single.csv", "loss\n0.9\n0.7\n")  # no delimiter anywhere: the first line is the header
    assert load_foreign(single).get(keys.TRAIN_LOSS).values.tolist() == [0.9, 0.7]


def test_semicolons_inside_quoted_names_do_not_decide_the_delimiter(tmp_path):
    path = _write(tmp_path, "log.csv", '"epoch","val_loss","note;a;b;c"\n1,1.2,x\n2,1.1,y\n')
    assert load_foreign(path).get(keys.VAL_LOSS).values.tolist() == [1.2, 1.1]


# --- flat dicts: x list, per-epoch lists, config and scalar extras ----------------------------------------------


LIP_READING = {
    "config": {"batch_size": 128, "learning_rate": 0.0003, "epochs": 3, "use_amp": True},
    "epochs": [1, 2, 3],
    "train_loss": [2.82, 1.91, 1.41],
    "train_wer": [0.99, 0.8, 0.6],
    "val_loss": [2.5, 1.8, 1.5],
    "val_wer": [0.95, 0.7, 0.55],
    "val_cer": [0.6, 0.4, 0.3],
    "learning_rate": [0.0001, 0.0002, 0.0003],
    "test_loss": 0.185,
    "test_wer": 0.14,
    "training_time_minutes": 9.75,
}


def test_flat_history_with_config_x_list_and_final_scalars(tmp_path):
    path = _json(tmp_path, LIP_READING, "training_history.json")
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.JSON_HISTORY and record.source == "json" and record.x_unit == "epoch"
    assert sorted(record.series) == [
        keys.epoch_lr("default"), keys.TRAIN_LOSS, "train/wer", "val/cer", keys.VAL_LOSS, "val/wer",
    ]
    assert record.get("val/wer").steps.tolist() == [1, 2, 3] and record.get("val/wer").values.tolist() == [0.95, 0.7, 0.55]
    assert record.get("train/wer").values.tolist() == [0.99, 0.8, 0.6]
    assert record.get(keys.epoch_lr("default")).values.tolist() == [0.0001, 0.0002, 0.0003]
    assert record.config == LIP_READING["config"]
    assert record.params == {
        "batch_size": "128", "learning_rate": "0.0003", "epochs": "3", "use_amp": "True",
        "test_loss": "0.185", "test_wer": "0.14", "training_time_minutes": "9.75",
    }
    assert record.meta["max_epochs"] == 3
    assert "monitor" not in record.meta  # val/loss is there


def test_the_x_list_gives_the_positions(tmp_path):
    data = {"epochs": [5, 6, 7], "train_loss": [0.5, 0.4, 0.3], "val_loss": [0.6, 0.5, 0.45], "note": "resumed"}
    record = load_foreign(_json(tmp_path, data))
    assert record.get(keys.VAL_LOSS).steps.tolist() == [5, 6, 7] and record.params == {"note": "resumed"}
    by_step = load_foreign(_json(tmp_path, {"steps": [100, 200], "train_loss": [2.0, 1.5], "val_loss": [2.1, 1.7]}, "s.json"))
    assert by_step.x_unit == "step" and by_step.get(keys.VAL_LOSS).steps.tolist() == [100, 200]


def test_flat_history_beside_a_scalar_was_misread_as_one_log_line(tmp_path):
    data = {
        "train_loss": [8.64, 8.63, 8.62], "val_loss": [8.62, 8.57, 8.56], "train_acc": [0.0001, 0.0, 0.0],
        "val_acc": [0.297, 0.297, 0.297], "epoch_times": [1007.9, 1003.8, 1027.0], "total_time_seconds": 3038.7,
    }
    path = _json(tmp_path, data, "training_history.json")
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.JSON_HISTORY
    assert sorted(record.series) == [keys.TRAIN_ACC, keys.TRAIN_LOSS, keys.VAL_ACC, keys.VAL_LOSS]
    assert record.get(keys.VAL_LOSS).values.tolist() == [8.62, 8.57, 8.56] and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3]
    assert record.params == {"total_time_seconds": "3038.7"}


def test_a_curve_longer_than_the_x_list_is_an_error(tmp_path):
    path = _json(tmp_path, {"epochs": [1, 2], "train_loss": [1.0, 0.9, 0.8], "val_loss": [1.1, 1.0]})
    with pytest.raises(InputError, match=r"'train_loss' has 3 entries but 'epochs' has only 2"):
        load_foreign(path)


def test_a_shorter_curve_fills_the_first_positions(tmp_path):
    record = load_foreign(_json(tmp_path, {"epochs": [1, 2, 3], "train_loss": [1.0, 0.9, 0.8], "val_loss": [1.1, 1.0]}))
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2] and record.get(keys.TRAIN_LOSS).steps.tolist() == [1, 2, 3]


def test_mostly_scalars_is_not_a_history(tmp_path):
    path = _json(tmp_path, {"loss": [1.0, 0.9], "lr": 0.1, "batch_size": 32, "seed": 0})
    with pytest.raises(InputError, match="'loss' is a JSON array"):
        load_foreign(path)


# --- plural names ---------------------------------------------------------------------------------------------


def test_plural_names(tmp_path):
    data = {"train_losses": [1.6, 1.4], "val_losses": [1.5, 1.45], "train_accs": [0.5, 0.6], "val_accuracies": [0.55, 0.58]}
    record = load_foreign(_json(tmp_path, data, "loss_history.json"))
    assert record.source == "json"
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [1.6, 1.4] and record.get(keys.VAL_LOSS).values.tolist() == [1.5, 1.45]
    assert record.get(keys.TRAIN_ACC).values.tolist() == [0.5, 0.6] and record.get(keys.VAL_ACC).values.tolist() == [0.55, 0.58]


def test_losses_list_beside_link_prediction_scores(tmp_path):
    data = {"epochs": [1, 2, 3], "losses": [0.68, 0.49, 0.35], "val_mrr": [0.18, 0.2, 0.27], "val_hits10": [0.29, 0.37, 0.46]}
    record = load_foreign(_json(tmp_path, data))
    assert sorted(record.series) == [keys.TRAIN_LOSS, "val/hits10", "val/mrr"]
    assert record.meta["monitor"] == "val/mrr" and record.meta["mode"] == "max"


# --- other validation metrics and the monitor -------------------------------------------------------------------


def test_list_of_epoch_dicts_with_only_a_similarity(tmp_path):
    rows = [{"epoch": 1, "train_cos": 0.632, "val_cos": 0.672}, {"epoch": 2, "train_cos": 0.699, "val_cos": 0.686}]
    path = _json(tmp_path, rows, "training_history.json")
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.JSONL and record.x_unit == "epoch"
    assert sorted(record.series) == ["train/cos", "val/cos"]
    assert record.get("val/cos").steps.tolist() == [1, 2] and record.get("val/cos").values.tolist() == [0.672, 0.686]
    assert record.get("train/cos").values.tolist() == [0.632, 0.699]
    assert record.meta["monitor"] == "val/cos" and record.meta["mode"] == "max"
    assert prepare(record).tags[keys.TAG_MODE] == "max"


def test_an_error_rate_is_monitored_downwards(tmp_path):
    path = _write(tmp_path, "log.csv", "epoch,train_loss,valid_wer,val_bleu\n1,3.0,0.9,10\n2,2.0,0.7,15\n")
    record = load_foreign(path)
    assert sorted(record.series) == [keys.TRAIN_LOSS, "val/bleu", "val/wer"]
    assert record.meta["monitor"] == "val/wer" and record.meta["mode"] == "min"  # the first in the file
    assert prepare(record).tags[keys.TAG_MODE] == "min"


def test_a_metric_of_unknown_direction_is_kept_but_never_monitored(tmp_path):
    path = _write(tmp_path, "log.csv", "epoch,train_loss,val_per\n1,3.0,0.9\n2,2.0,0.7\n")
    record = load_foreign(path)
    assert record.get("val/per").values.tolist() == [0.9, 0.7]
    assert "monitor" not in record.meta and "mode" not in record.meta


def test_no_monitor_is_named_when_val_loss_is_there(tmp_path):
    record = load_foreign(_write(tmp_path, "log.csv", "epoch,val_loss,val_f1\n1,1.0,0.5\n2,0.9,0.6\n"))
    assert record.get("val/f1") is not None and "monitor" not in record.meta


def test_timings_and_sizes_are_not_metrics_and_worded_guesses_are_dropped(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_time": 3.2, "train_samples": 500, "val_split": "random"},
        {"epoch": 2, "train_loss": 0.8, "val_loss": 1.0, "val_time": 3.1, "train_samples": 500, "val_split": "random"},
    ]
    record = load_foreign(_write(tmp_path, "log.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert sorted(record.series) == [keys.TRAIN_LOSS, keys.VAL_LOSS]


@pytest.mark.parametrize(
    "name, mode",
    [
        ("loss", "min"), ("val_error_rate", "min"), ("top1_err", "min"), ("mse", "min"), ("val_mae", "min"),
        ("rmse", "min"), ("wer", "min"), ("cer", "min"), ("perplexity", "min"), ("ppl", "min"), ("nll", "min"),
        ("chamfer_dist", "min"), ("dice_loss", "min"),
        ("acc", "max"), ("val_accuracy", "max"), ("f1", "max"), ("macro_f1", "max"), ("auc", "max"),
        ("precision", "max"), ("prec", "max"), ("recall", "max"), ("iou", "max"), ("mIoU", "max"), ("mAP50", "max"),
        ("bbox_mAP", "max"), ("dice", "max"), ("cos", "max"), ("cosine", "max"), ("sim", "max"), ("score", "max"),
        ("r2", "max"), ("bleu", "max"), ("rouge1", "max"), ("mrr", "max"), ("hits10", "max"), ("hits@10", "max"),
        ("top1", "max"), ("top5", "max"),
        ("MAPE", "min"), ("val_smape", "min"),  # not "map": an error in percent
        ("per", None), ("geom", None), ("bacc", None), ("simple", None),
    ],
)
def test_metric_direction_table(name, mode):
    assert metric_mode(name) == mode


def test_pick_monitor_takes_the_first_plain_validation_metric_with_a_known_direction():
    assert pick_monitor(["train/f1", "val/per", "val/a/f1", "val/ndcg", "val/f1", "val/mae"]) == ("val/f1", "max")
    assert pick_monitor(["val/per", "train/cos"]) is None


# --- more naming habits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [
        ("TrainLoss", keys.TRAIN_LOSS), ("ValLoss", keys.VAL_LOSS), ("ValAcc", keys.VAL_ACC),
        ("avg_val_loss", keys.VAL_LOSS), ("mean_train_loss", keys.TRAIN_LOSS), ("dev_loss", keys.VAL_LOSS),
        ("dev_bleu", "val/bleu"), ("valid_dice", "val/dice"), ("val/mrr", "val/mrr"), ("eval_top1", keys.VAL_ACC),
        ("train_top1", keys.TRAIN_ACC), ("train_accuracies", keys.TRAIN_ACC), ("validation_losses", keys.VAL_LOSS),
        ("best_val_loss", None), ("val_time", None), ("eval_runtime", None), ("train_samples_per_second", None),
        ("validity", None), ("val", None),
    ],
)
def test_hand_written_names(name, key):
    role = table_role(name)
    assert (role.key if role else None) == key


def test_camel_case_header(tmp_path):
    path = _write(tmp_path, "train_log.csv", "Epoch,TrainLoss,ValLoss,ValAcc\n\n1,5.82,1.46,0.70\n\n2,2.35,0.76,0.79\n")
    record = load_foreign(path)
    assert sorted(record.series) == [keys.TRAIN_LOSS, keys.VAL_ACC, keys.VAL_LOSS]
    assert record.get(keys.VAL_ACC).steps.tolist() == [1, 2] and record.get(keys.VAL_ACC).values.tolist() == [0.70, 0.79]


def test_dev_split_of_a_step_indexed_language_model(tmp_path):
    rows = [{"step": 250, "train_loss": 5.2, "dev_loss": 5.21, "learning_rate": 0.0012},
            {"step": 500, "train_loss": 4.5, "dev_loss": 4.52, "learning_rate": 0.0012}]
    record = load_foreign(_json(tmp_path, rows, "loss_history.json"))
    assert record.x_unit == "step" and record.get(keys.VAL_LOSS).steps.tolist() == [250, 500]
    assert record.get(keys.VAL_LOSS).values.tolist() == [5.21, 4.52]


def test_keras_metrics_beside_their_val_twins_are_training_curves(tmp_path):
    path = _write(
        tmp_path, "training_history.csv",
        "accuracy,auc,loss,val_accuracy,val_auc,val_loss,learning_rate\n0.84,0.94,0.49,0.94,0.99,0.38,0.001\n"
        "0.89,0.96,0.40,0.94,0.99,0.35,0.001\n",
    )
    record = load_foreign(path)
    assert sorted(record.series) == [
        keys.epoch_lr("default"), keys.TRAIN_ACC, "train/auc", keys.TRAIN_LOSS, keys.VAL_ACC, "val/auc", keys.VAL_LOSS,
    ]
    assert record.get("train/auc").values.tolist() == [0.94, 0.96] and record.get("val/auc").steps.tolist() == [1, 2]


def test_long_form_log_with_a_phase_column(tmp_path):
    path = _write(
        tmp_path, "train_log.csv",
        "stage,epoch,phase,loss,accuracy,f1\n"
        "stage1,1,train,0.48,0.77,0.76\nstage1,1,val,0.42,0.81,0.80\n"
        "stage1,2,train,0.47,0.78,0.77\nstage1,2,val,0.41,0.82,0.81\n"
        "stage2,1,train,0.40,0.82,0.81\nstage2,1,val,0.35,0.85,0.84\n"
        "stage2,2,train,0.30,0.88,0.87\nstage2,2,val,0.33,0.86,0.85\n",
    )
    record = load_foreign(path)
    assert record.meta["runs_in_file"] == 2  # the epoch counter starts again for stage 2
    assert sorted(record.series) == [keys.TRAIN_ACC, "train/f1", keys.TRAIN_LOSS, keys.VAL_ACC, "val/f1", keys.VAL_LOSS]
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2] and record.get(keys.VAL_LOSS).values.tolist() == [0.35, 0.33]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [0.40, 0.30]
    first = load_foreign(path, run_index=0)
    assert first.get(keys.VAL_ACC).values.tolist() == [0.81, 0.82]


# --- what cannot be read says why --------------------------------------------------------------------------------


def test_rows_of_unnamed_numbers_need_a_mapping_by_position(tmp_path):
    path = _json(tmp_path, [[15, 2.18, 2.17], [30, 2.04, 2.09], [45, 1.95, 1.97]], "loss_history.json")
    with pytest.raises(InputError) as info:
        load_foreign(path)
    message = str(info.value)
    assert message.startswith(f"{path}: no training curves found: the values have no names, only positions (0, 1, 2)")
    assert message.endswith("e.g. --map step=0 --map train/loss=1 --map val/loss=2") and "\n" not in message
    record = load_foreign(path, mapping={"step": "0", "train/loss": "1", "val/loss": "2"})
    assert record.x_unit == "step" and record.get(keys.VAL_LOSS).steps.tolist() == [15, 30, 45]
    assert record.get(keys.VAL_LOSS).values.tolist() == [2.17, 2.09, 1.97]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [2.18, 2.04, 1.95]


def test_a_csv_without_a_header_line_is_named_by_position(tmp_path):
    path = _write(tmp_path, "losses.csv", "1,0.9,1.0\n2,0.7,0.8\n")
    with pytest.raises(InputError, match=r"only positions \(0, 1, 2\)"):
        load_foreign(path)
    record = load_foreign(path, mapping={"epoch": "0", "train/loss": "1", "val/loss": "2"})
    assert record.x_unit == "epoch" and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [0.9, 0.7]


def test_the_x_counter_by_map_only_where_the_format_has_none(tmp_path):
    path = _write(tmp_path, "log.csv", "it,objective,holdout\n100,2.0,2.1\n200,1.5,1.7\n")
    record = load_foreign(path, mapping={"step": "it", "train/loss": "objective", "val/loss": "holdout"})
    assert record.x_unit == "step" and record.get(keys.VAL_LOSS).steps.tolist() == [100, 200]
    keras_file = _write(tmp_path, "keras.csv", KERAS_SEMICOLON)
    with pytest.raises(InputError, match=r"--map step=\.\.\.: only a plain CSV or JSON-lines log"):
        load_foreign(keras_file, mapping={"step": "epoch"})
    with pytest.raises(InputError, match="no column 'nope'"):
        load_foreign(path, mapping={"step": "nope"})


def test_mmdetection_copypaste_strings_are_left_out(tmp_path):
    lines = [
        {"env_info": "x", "seed": 0, "exp_name": "mask_rcnn.py"},
        {"mode": "train", "epoch": 1, "iter": 10, "lr": 0.0001, "loss": 1.5, "time": 0.3},
        {"mode": "val", "epoch": 1, "iter": 13, "lr": 0.0001, "bbox_mAP": 0.0673, "bbox_mAP_copypaste": "0.0673 0.0952 0.0815"},
        {"mode": "train", "epoch": 2, "iter": 10, "lr": 0.0001, "loss": 1.2, "time": 0.3},
        {"mode": "val", "epoch": 2, "iter": 13, "lr": 0.0001, "bbox_mAP": 0.5452, "bbox_mAP_copypaste": "0.5452 0.7317 0.7168"},
    ]
    record = load_foreign(_write(tmp_path, "20230208_162410.log.json", "".join(json.dumps(line) + "\n" for line in lines)))
    assert record.source == "mmcv" and record.get("val/bbox_mAP").values.tolist() == [0.0673, 0.5452]
    assert not any("copypaste" in key for key in record.series)


def test_lightning_metrics_beside_the_loss_and_lr_rows_that_carry_only_the_step(tmp_path):
    path = _write(
        tmp_path, "metrics.csv",
        "epoch,lr-Adam,step,train_loss_step,train_f1_step,train_loss_epoch,train_f1_epoch,val_loss,val_f1\n"
        ",0.001,9,,,,,,\n0,,9,1.0,0.4,,,,\n,0.001,19,,,,,,\n0,,19,0.9,0.5,,,,\n0,,19,,,,,0.95,0.55\n0,,19,,,0.95,0.45,,\n"
        ",0.0005,29,,,,,,\n1,,29,0.8,0.6,,,,\n,0.0005,39,,,,,,\n1,,39,0.7,0.65,,,,\n1,,39,,,,,0.85,0.6\n1,,39,,,0.75,0.62,,\n",
    )
    record = load_foreign(path)
    assert record.source == "lightning" and record.x_unit == "epoch"
    assert sorted(record.series) == [
        keys.STEP_LOSS, keys.step_lr("default"), "train/f1", keys.TRAIN_LOSS, "val/f1", keys.VAL_LOSS,
    ]  # train_f1_step is not kept: only a loss is kept per step
    assert record.get(keys.step_lr("default")).steps.tolist() == [9, 19, 29, 39]
    assert record.get(keys.step_lr("default")).values.tolist() == [0.001, 0.001, 0.0005, 0.0005]
    assert record.get("train/f1").steps.tolist() == [1, 2] and record.get("train/f1").values.tolist() == [0.45, 0.62]
    assert record.get("val/f1").values.tolist() == [0.55, 0.6] and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2]


def test_nested_settings_are_the_config_and_dotted_params(tmp_path):
    data = {"config": {"optimizer": {"name": "adamw", "lr": 0.001}, "epochs": 2}, "train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9]}
    record = load_foreign(_json(tmp_path, data))
    assert record.config == data["config"]
    assert record.params == {"epochs": "2", "optimizer.name": "adamw", "optimizer.lr": "0.001"}


def test_lightning_epoch_end_rows_a_step_behind_the_validation_are_one_run(tmp_path):
    path = _write(
        tmp_path, "metrics.csv",
        "epoch,step,test_acc,train_acc_epoch,train_loss_epoch,val_acc,val_loss\n"
        "0,1,,,,0.33,1.38\n0,1,,0.25,1.39,,\n1,3,,,,0.35,1.37\n1,2,,0.30,1.35,,\n2,5,,,,0.40,1.30\n2,4,,0.35,1.30,,\n3,5,0.38,,,,\n",
    )
    record = load_foreign(path)
    assert record.source == "lightning" and record.meta["runs_in_file"] == 1  # the step going back by one is no new run
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3] and record.get(keys.VAL_LOSS).values.tolist() == [1.38, 1.37, 1.30]
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [1.39, 1.35, 1.30]


def test_mmengine_scalars_without_iter(tmp_path):
    lines = [
        {"lr": 3e-08, "data_time": 0.05, "loss": 0.94, "decode.loss_ce": 0.67, "time": 1.7, "memory": 6118, "step": 20},
        {"lr": 3e-05, "data_time": 0.05, "loss": 0.89, "decode.loss_ce": 0.63, "time": 0.9, "memory": 6118, "step": 40},
        {"aAcc": 83.8, "mIoU": 45.0, "mAcc": 56.86, "data_time": 0.01, "time": 0.16, "step": 40},
        {"lr": 6e-05, "data_time": 0.02, "loss": 0.82, "decode.loss_ce": 0.57, "time": 0.5, "memory": 6118, "step": 60},
        {"lr": 9e-05, "data_time": 0.02, "loss": 0.74, "decode.loss_ce": 0.50, "time": 0.5, "memory": 6118, "step": 80},
        {"aAcc": 89.3, "mIoU": 55.9, "mAcc": 63.54, "data_time": 0.01, "time": 0.02, "step": 80},
    ]
    path = _write(tmp_path, "scalars.json", "".join(json.dumps(line) + "\n" for line in lines))
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.MMENGINE_SCALARS and record.x_unit == "step"
    assert record.get("val/mIoU").steps.tolist() == [40, 80] and record.get("val/mIoU").values.tolist() == [45.0, 55.9]
    assert record.get(keys.STEP_LOSS).steps.tolist() == [20, 40, 60, 80]
    assert record.meta["monitor"] == "val/mIoU" and record.meta["mode"] == "max"


def test_a_keras_csv_has_its_names_sorted_and_a_hand_written_one_need_not(tmp_path):
    keras_file = _write(tmp_path, "keras.csv", "epoch,acc,loss\n0,0.1,2.0\n1,0.2,1.5\n")
    assert detect_format(keras_file) is ImportedFormat.KERAS_CSV
    assert load_foreign(keras_file).get(keys.TRAIN_LOSS).steps.tolist() == [1, 2]  # CSVLogger counts from 0
    script = _write(tmp_path, "script.csv", "epoch,loss,acc\n1,2.0,0.1\n2,1.5,0.2\n")
    assert detect_format(script) is ImportedFormat.CSV
    assert load_foreign(script).get(keys.TRAIN_LOSS).steps.tolist() == [1, 2]


def test_mmcv_log_of_evaluations_only(tmp_path):
    lines = [{"env_info": "x"}] + [
        {"mode": "val", "epoch": e, "iter": 10, "lr": 1e-05, "accuracy_top-1": acc} for e, acc in ((1, 32.4), (2, 34.3), (3, 52.2))
    ]
    record = load_foreign(_write(tmp_path, "20230101_000000.log.json", "".join(json.dumps(line) + "\n" for line in lines)))
    assert record.x_unit == "epoch" and record.get(keys.VAL_ACC).steps.tolist() == [1, 2, 3]
    assert record.get(keys.VAL_ACC).values.tolist() == [32.4, 34.3, 52.2]
