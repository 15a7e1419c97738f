"""TensorBoard event files written by Lightning's TensorBoardLogger and HF report_to="tensorboard" (real files)."""

from __future__ import annotations

import shutil

import pytest
from torch.utils.tensorboard import SummaryWriter

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers import ImportedFormat, detect_format, load_foreign, locate_log
from paramdoctor.importers.tensorboard import event_files, is_event_file
from tests.importers.helpers import fixture

LIGHTNING = fixture("tb_lightning")
HF = fixture("tb_hf")


def test_lightning_logs_folder_is_found_and_read_by_epoch():
    file = locate_log(LIGHTNING)
    assert file.parent == LIGHTNING / "lightning_logs" / "version_0" and file.name.startswith("events.out.tfevents.")
    assert detect_format(LIGHTNING) is ImportedFormat.TENSORBOARD
    record = load_foreign(LIGHTNING)
    assert record.source == "lightning" and record.x_unit == "epoch" and record.meta["format"] == "tensorboard"
    val = record.get(keys.VAL_LOSS)
    assert val.steps.tolist() == list(range(1, 13))  # Lightning's 0-based epoch tag + 1
    assert val.values[:3].tolist() == pytest.approx([0.6360691785812378, 0.6018315553665161, 0.6256674528121948])
    assert record.get(keys.VAL_ACC).values[0] == pytest.approx(0.875)
    assert record.get(keys.TRAIN_LOSS).values[0] == pytest.approx(1.0216035842895508)  # train_loss_epoch
    step_loss = record.get(keys.STEP_LOSS)  # train_loss_step every 4 steps
    assert step_loss.steps[:3].tolist() == [3, 7, 11] and step_loss.values[0] == pytest.approx(1.0366618633270264)
    # lr-AdamW logged once per epoch by LearningRateMonitor; StepLR(step_size=4, gamma=0.5)
    lr = record.get(keys.epoch_lr("default"))
    assert lr.steps.tolist() == list(range(1, 13))
    assert lr.values.tolist() == pytest.approx([3e-3] * 4 + [1.5e-3] * 4 + [7.5e-4] * 4)
    assert record.params == {"hidden": "128", "lr": "0.003"}  # hparams.yaml beside the events
    assert "hp_metric" not in record.series


def test_hf_runs_folder_is_step_logged_and_epoch_indexed():
    assert locate_log(HF).parent.parent == HF / "runs"
    record = load_foreign(HF)
    assert record.source == "hf_trainer" and record.x_unit == "epoch" and record.status == "FINISHED"
    assert record.get(keys.VAL_LOSS).steps.tolist() == [2, 4, 6, 8]  # eval every 20 steps, 10 steps per epoch
    assert record.get(keys.VAL_ACC).values.tolist() == pytest.approx([0.835, 0.865, 0.87, 0.87])
    assert record.get(keys.STEP_LOSS).steps.tolist() == list(range(5, 81, 5))
    assert record.get(keys.step_lr("default")).values[0] == pytest.approx(8e-4)  # warmup 10 steps to 2e-3
    assert len(record.get(keys.STEP_GRAD_NORM)) == 16
    losses = record.get(keys.STEP_LOSS).values
    assert record.get(keys.TRAIN_LOSS).values[0] == pytest.approx(losses[:4].mean(), rel=1e-6)
    # the TrainingArguments text summary gives the settings
    assert record.params["learning_rate"] == "0.002" and record.params["per_device_train_batch_size"] == "16"
    assert record.meta["max_epochs"] == 8 and record.meta["steps_per_epoch"] == 10
    for summary_only in ("train/train_loss", "train/total_flos", "val/runtime"):
        assert summary_only not in record.series


def test_an_event_file_is_recognised_by_content_not_name(tmp_path):
    source = event_files(locate_log(HF).parent)[0]
    renamed = tmp_path / "exported.bin"
    shutil.copy(source, renamed)
    assert is_event_file(renamed) and detect_format(renamed) is ImportedFormat.TENSORBOARD
    assert load_foreign(renamed).get(keys.VAL_LOSS).steps.tolist() == [2, 4, 6, 8]


def test_summary_writer_scalars_steps_and_restarts(tmp_path):
    """A hand-made SummaryWriter log: a second run in the same folder restarts at step 0 and is a run of its own."""
    for run, scale in ((0, 1.0), (1, 0.5)):
        writer = SummaryWriter(log_dir=str(tmp_path), filename_suffix=f".{run}")
        for epoch in range(4):
            writer.add_scalar("train_loss", scale * (2.0 - 0.3 * epoch), epoch)
            writer.add_scalar("val_loss", scale * (2.1 - 0.2 * epoch), epoch)
        writer.close()
    record = load_foreign(tmp_path)
    assert record.meta["runs_in_file"] == 2 and record.meta["event_files"] == 2
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx([1.05, 0.95, 0.85, 0.75])
    first = load_foreign(tmp_path, run_index=0)
    assert first.get(keys.TRAIN_LOSS).values.tolist() == pytest.approx([2.0, 1.7, 1.4, 1.1])
    assert first.x_unit == "step" and first.get(keys.TRAIN_LOSS).steps.tolist() == [0, 1, 2, 3]


def test_a_file_cut_short_keeps_what_was_written(tmp_path):
    source = event_files(locate_log(LIGHTNING).parent)[0]
    data = source.read_bytes()
    cut = tmp_path / source.name
    cut.write_bytes(data[: len(data) - 7])  # the last record loses its end
    record = load_foreign(cut)
    assert record.meta["truncated_last_line"] is True
    assert len(record.get(keys.VAL_LOSS)) == 12


def test_a_damaged_record_is_one_line_naming_the_file(tmp_path):
    source = event_files(locate_log(LIGHTNING).parent)[0]
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / source.name
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        load_foreign(bad)
    assert str(bad) in str(info.value) and "damaged event file" in str(info.value) and "\n" not in str(info.value)
