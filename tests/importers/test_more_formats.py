"""timm, MMEngine, mmcv, Detectron2, fastai, W&B exports and nested JSON histories, read from real files."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from paramdoctor import keys
from paramdoctor.importers import ImportedFormat, detect_format, load_foreign, locate_log
from tests.importers.helpers import fixture, overfits


def _column(path, name):
    with open(path, newline="") as fh:
        return [float(row[name]) for row in csv.DictReader(fh) if row[name] != ""]


# --- timm -----------------------------------------------------------------------------------


def test_timm_summary_csv():
    path = fixture("timm_summary/summary.csv")
    assert locate_log(fixture("timm_summary")) == path
    record = load_foreign(fixture("timm_summary"))
    assert record.source == "timm" and record.x_unit == "epoch"
    assert record.get(keys.VAL_ACC).steps.tolist() == list(range(1, 11))  # epoch 0 -> 1
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx(_column(path, "eval_top1"))  # percent, as written
    assert record.get(keys.TRAIN_LOSS).values.tolist() == pytest.approx(_column(path, "train_loss"))
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx(_column(path, "eval_loss"))
    assert record.get("val/top5").values.tolist() == pytest.approx(_column(path, "eval_top5"))
    assert record.get(keys.epoch_lr("default")).values.tolist() == pytest.approx(_column(path, "lr"))
    assert record.meta["monitor"] == keys.VAL_ACC and record.meta["mode"] == "max"


def test_timm_resumed_run_repeats_the_header_but_is_one_run(tmp_path):
    lines = fixture("timm_summary/summary.csv").read_text().splitlines()
    path = tmp_path / "summary.csv"
    path.write_text("\n".join(lines[:6] + [lines[0]] + lines[6:]) + "\n")  # train.py --resume writes the header again
    record = load_foreign(path)
    assert record.meta["runs_in_file"] == 1 and len(record.get(keys.VAL_LOSS)) == 10


# --- MMEngine and mmcv -------------------------------------------------------------------------


def test_mmengine_epoch_based_classification():
    folder = fixture("mmengine_cls")
    assert locate_log(folder).parts[-2:] == ("vis_data", "scalars.json")
    record = load_foreign(folder)
    assert record.source == "mmengine" and record.x_unit == "epoch"
    assert record.run_name == "mmengine_cls"
    assert load_foreign(locate_log(folder)).run_name == locate_log(folder).parent.parent.name  # the <timestamp> folder
    assert record.get(keys.VAL_ACC).steps.tolist() == [1, 2, 3, 4, 5, 6]  # validation step = epoch
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx([86.875, 78.75, 83.125, 82.5, 82.5, 83.75])
    step_loss = record.get(keys.STEP_LOSS)
    assert step_loss.steps[:3].tolist() == [5, 10, 15] and step_loss.values[0] == pytest.approx(1.151461410522461)
    assert record.get(keys.TRAIN_LOSS).values[0] == pytest.approx(step_loss.values[:4].mean())  # epoch 1 = iters 5..20
    lr = record.get(keys.step_lr("default"))
    assert lr.values[0] == pytest.approx(0.05) and lr.values[-1] == pytest.approx(0.005)  # MultiStepLR at epoch 4
    assert record.meta["monitor"] == keys.VAL_ACC and record.meta["mode"] == "max"


def test_mmengine_iteration_based_detection():
    record = load_foreign(fixture("mmengine_det"))
    assert record.x_unit == "step"
    ap = record.get("val/coco_bbox_mAP")
    assert ap.steps.tolist() == [60, 120, 180, 240] and ap.values.tolist() == pytest.approx([0.5025, 0.4988, 0.4762, 0.4725])
    assert record.get("val/coco_bbox_mAP_50") is not None
    assert record.meta["monitor"] == "val/coco_bbox_mAP" and record.meta["mode"] == "max"
    first = json.loads(locate_log(fixture("mmengine_det")).read_text().splitlines()[0])
    assert record.get(keys.STEP_LOSS).values[0] == pytest.approx(first["loss"])  # the logged sum, not the parts
    assert first["loss"] == pytest.approx(first["loss_cls"] + first["loss_bbox"])


def test_mmengine_loss_parts_are_summed_when_no_total(tmp_path):
    path = tmp_path / "scalars.json"
    lines = [
        {"lr": 0.01, "data_time": 0.1, "loss_cls": 1.0, "loss_bbox": 0.5, "time": 0.2, "iter": 10, "step": 10},
        {"lr": 0.01, "data_time": 0.1, "loss_cls": 0.8, "loss_bbox": 0.4, "time": 0.2, "iter": 20, "step": 20},
        {"mIoU": 41.5, "aAcc": 80.0, "data_time": 0.1, "time": 0.1, "step": 20},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    record = load_foreign(path)
    assert record.get(keys.STEP_LOSS).values.tolist() == pytest.approx([1.5, 1.2])
    assert record.get("val/mIoU").values.tolist() == [41.5] and record.meta["monitor"] == "val/mIoU"


def test_mmcv_log_json():
    folder = fixture("mmcv_work_dir")
    file = locate_log(folder)
    assert file.name.endswith(".log.json") and detect_format(folder) is ImportedFormat.MMCV_LOG
    record = load_foreign(folder)
    assert record.source == "mmcv" and record.x_unit == "epoch"
    assert record.params["exp_name"] == "faster_rcnn_fixture.py" and "env_info" not in record.params
    val = [json.loads(line) for line in file.read_text().splitlines() if '"mode": "val"' in line]
    assert record.get("val/bbox_mAP").values.tolist() == pytest.approx([v["bbox_mAP"] for v in val])
    assert record.get("val/bbox_mAP").steps.tolist() == [1, 2, 3, 4, 5, 6]
    steps = record.get(keys.STEP_LOSS).steps.tolist()
    assert steps[:5] == [5, 10, 15, 20, 25]  # iter within the epoch + 20 per earlier epoch
    assert record.meta["monitor"] == "val/bbox_mAP"


# --- Detectron2 ----------------------------------------------------------------------------------


def test_detectron2_metrics_json():
    folder = fixture("detectron2_out")
    assert locate_log(folder) == folder / "metrics.json"
    record = load_foreign(folder)
    assert record.source == "detectron2" and record.x_unit == "step"
    lines = [json.loads(line) for line in (folder / "metrics.json").read_text().splitlines()]
    ap = record.get("val/bbox_AP")
    assert ap.steps.tolist() == [200, 400, 600]  # iterations 199 and 399 (after 200, 400 steps), the final one at 600
    assert ap.values.tolist() == pytest.approx([line["bbox/AP"] for line in lines if "bbox/AP" in line])
    assert record.get("val/bbox_AP50") is not None and not any("person" in k for k in record.series)
    step_loss = record.get(keys.STEP_LOSS)
    assert step_loss.steps[:2].tolist() == [20, 40] and step_loss.values[0] == pytest.approx(lines[0]["total_loss"])
    assert record.get(keys.step_lr("default")).values[-1] == pytest.approx(0.002)  # x0.1 after iteration 450
    assert record.meta["monitor"] == "val/bbox_AP" and record.meta["mode"] == "max"


def test_detectron2_without_total_loss_sums_the_parts_and_reads_several_test_sets(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [
        {"iteration": 19, "loss_cls": 1.0, "loss_box_reg": 0.5, "lr": 0.01, "time": 0.2,
         "coco_val/bbox/AP": 20.0, "lvis_val/bbox/AP": 10.0},
        {"iteration": 39, "loss_cls": 0.8, "loss_box_reg": 0.4, "lr": 0.01, "time": 0.2},
        {"iteration": 40, "coco_val/bbox/AP": 21.0, "lvis_val/bbox/AP": 11.0},
    ]
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    record = load_foreign(path)
    assert record.get(keys.STEP_LOSS).values.tolist() == pytest.approx([1.5, 1.2])
    assert record.meta["eval_sets"] == ["coco_val", "lvis_val"]
    assert record.get("val/coco_val/bbox_AP").steps.tolist() == [20, 40]
    assert record.get("val/lvis_val/bbox_AP").values.tolist() == [10.0, 11.0]
    assert record.meta["monitor"] == "val/coco_val/bbox_AP"


# --- fastai -------------------------------------------------------------------------------------


def test_fastai_history_csv():
    path = fixture("fastai_history/history.csv")
    assert locate_log(fixture("fastai_history")) == path
    record = load_foreign(path)
    assert record.source == "fastai" and record.x_unit == "epoch"
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(1, 15))
    assert record.get(keys.TRAIN_LOSS).values.tolist() == pytest.approx(_column(path, "train_loss"))
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx(_column(path, "accuracy"))  # a validation metric
    assert record.get("val/error_rate").values.tolist() == pytest.approx(_column(path, "error_rate"))
    assert keys.TRAIN_ACC not in record.series
    assert overfits(record)


def test_fastai_none_values_and_a_skipped_validation(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,train_loss,valid_loss,accuracy,time\n0,1.2,1.1,None,00:03\n1,0.9,00:02\n2,0.7,0.8,0.7,01:02:03\n")
    record = load_foreign(path)
    assert record.get(keys.TRAIN_LOSS).values.tolist() == [1.2, 0.9, 0.7]
    assert record.get(keys.VAL_LOSS).steps.tolist() == [1, 3] and record.get(keys.VAL_ACC).values.tolist() == [0.7]


# --- Weights & Biases --------------------------------------------------------------------------------


def test_wandb_panel_export_one_run_each():
    path = fixture("wandb_panel_export.csv")
    last = load_foreign(path)
    first = load_foreign(path, run_index=0)
    assert last.meta["runs_in_file"] == 2 and last.meta["run_names"] == ["gentle-sun-7", "wild-river-8"]
    assert first.run_name == "gentle-sun-7" and last.run_name == "wild-river-8"
    assert first.x_unit == "step" and first.get(keys.VAL_LOSS).steps.tolist() == list(range(40, 401, 40))
    assert first.get(keys.VAL_LOSS).values[0] == pytest.approx(2.294722)
    assert first.get(keys.STEP_LOSS).values[:2].tolist() == pytest.approx([2.402687, 2.266942])  # not the __MIN/__MAX
    assert last.get(keys.VAL_LOSS).values[-1] > 2 * last.get(keys.VAL_LOSS).values.min()  # the high-LR run overfits


def test_wandb_panel_export_with_an_epoch_axis(tmp_path):
    path = tmp_path / "wandb_export_2024-12-27T01_42_23.467+01_00.csv"
    path.write_text('"epoch","run-a - val_loss","run-a - val_loss__MIN","run-a - val_loss__MAX","run-a - _step"\n'
                    '"0","1.5","1.4","1.6","10"\n"1","1.2","1.1","1.3","20"\n"2","1.1","1.0","1.2","30"\n')
    record = load_foreign(path)
    assert record.x_unit == "epoch" and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2, 3]
    assert record.run_name == "run-a"


def test_wandb_run_history_of_an_hf_run():
    path = fixture("wandb_history.csv")
    record = load_foreign(path)
    assert record.source == "wandb" and record.x_unit == "step"  # evaluations at half epochs
    assert record.get(keys.VAL_LOSS).steps.tolist() == [40, 80, 120, 160, 200, 240]  # train/global_step, not _step
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx(_column(path, "eval/loss"))
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx(_column(path, "eval/accuracy"))
    assert record.get(keys.STEP_LOSS).values.tolist() == pytest.approx(_column(path, "train/loss"))
    assert record.meta["steps_per_epoch"] == 80


def test_wandb_history_saved_by_pandas_with_its_index(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(",_step,_runtime,_timestamp,epoch,train_loss,val_loss\n0,0,1.0,1.7e9,0,1.0,1.2\n1,1,2.0,1.7e9,1,0.8,1.0\n")
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.WANDB_HISTORY
    assert record.get(keys.VAL_LOSS).values.tolist() == [1.2, 1.0] and record.x_unit == "epoch"


# --- nested JSON histories ------------------------------------------------------------------------------


def test_keras_history_saved_with_its_params():
    record = load_foreign(fixture("nested_keras_history.json"))
    data = json.loads(fixture("nested_keras_history.json").read_text())
    assert record.source == "keras" and record.meta["format"] == "json_history"
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx(data["history"]["val_loss"])
    assert record.get(keys.TRAIN_ACC).values.tolist() == pytest.approx(data["history"]["accuracy"])
    assert record.get(keys.VAL_LOSS).steps.tolist() == list(range(1, 11))
    assert record.meta["max_epochs"] == 10 and record.params["steps"] == "8"


def test_epochs_and_metrics_shape():
    data = json.loads(fixture("nested_epochs_metrics.json").read_text())
    record = load_foreign(fixture("nested_epochs_metrics.json"))
    assert record.get(keys.VAL_LOSS).steps.tolist() == data["epochs"]
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx(data["metrics"]["val_accuracy"])
    assert record.get(keys.epoch_lr("default")).values.tolist() == [1e-3] * 8
    assert overfits(record)


def test_one_dict_per_split_shape():
    data = json.loads(fixture("nested_splits.json").read_text())
    record = load_foreign(fixture("nested_splits.json"))
    assert record.get(keys.TRAIN_LOSS).values.tolist() == pytest.approx(data["train"]["loss"])
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx(data["val"]["acc"])
    assert record.get(keys.TRAIN_ACC).values.tolist() == pytest.approx(data["train"]["acc"])


def test_list_of_epoch_dicts_still_reads_as_json_lines(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps([{"epoch": 1, "loss": 1.0, "val_loss": 1.1}, {"epoch": 2, "loss": 0.8, "val_loss": 1.0}]))
    record = load_foreign(path)
    assert detect_format(path) is ImportedFormat.JSONL
    assert record.get(keys.VAL_LOSS).values.tolist() == [1.1, 1.0] and record.get(keys.VAL_LOSS).steps.tolist() == [1, 2]


# --- detection by content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected, tool",
    [
        ("timm_summary/summary.csv", ImportedFormat.TIMM_SUMMARY, "timm"),
        ("fastai_history/history.csv", ImportedFormat.FASTAI_CSV, "fastai"),
        ("detectron2_out/metrics.json", ImportedFormat.DETECTRON2_METRICS, "detectron2"),
        ("wandb_panel_export.csv", ImportedFormat.WANDB_PANEL, "wandb"),
        ("wandb_history.csv", ImportedFormat.WANDB_HISTORY, "wandb"),
        ("nested_epochs_metrics.json", ImportedFormat.JSON_HISTORY, "json"),
        ("nested_splits.json", ImportedFormat.JSON_HISTORY, "json"),
        ("nested_keras_history.json", ImportedFormat.JSON_HISTORY, "keras"),
    ],
)
def test_new_formats_are_detected_by_content(tmp_path, name, expected, tool):
    renamed = tmp_path / "exported.txt"
    shutil.copy(fixture(name), renamed)
    assert detect_format(renamed) is expected
    assert load_foreign(renamed).source == tool


@pytest.mark.parametrize("folder, expected", [("mmengine_cls", ImportedFormat.MMENGINE_SCALARS), ("mmcv_work_dir", ImportedFormat.MMCV_LOG)])
def test_openmmlab_logs_are_detected_by_content(tmp_path, folder, expected):
    renamed = tmp_path / "exported.txt"
    shutil.copy(locate_log(fixture(folder)), renamed)
    assert detect_format(renamed) is expected
