"""Truncated, malformed and hostile files: one InputError line naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramdoctor.errors import InputError
from paramdoctor.importers import MAX_BYTES, load_foreign
from paramdoctor.importers.reading import read_text
from paramdoctor.record import RunRecord
from tests.importers.helpers import FIXTURES

HOSTILE = {
    "bomb.json": "[" * 100_000 + "]" * 100_000,
    "bomb_in_history.json": '{"log_history": ' + "[" * 50_000 + "]" * 50_000 + "}",
    "giant_int.json": '{"log_history": [{"step": 1, "loss": ' + "9" * 5000 + "}]}",
    "loss_is_word.json": '{"log_history": [{"step": 1, "loss": "abc"}]}',
    "step_is_list.json": '{"log_history": [{"step": [1], "loss": 1.0}]}',
    "step_is_huge.json": '{"log_history": [{"step": 1e300, "loss": 1.0}]}',
    "history_not_list.json": '{"log_history": 5}',
    "history_entry_not_object.json": '{"log_history": [1, 2]}',
    "empty_history.json": '{"log_history": []}',
    "truncated.json": '{"log_history": [{"step": 1, "loss": 1.0}, {"st',
    "number.json": "42",
    "string.json": '"hello"',
    "empty_list.json": "[]",
    "keras_history_words.json": '{"loss": [1, 2, "x"]}',
    "keras_history_nested.json": '{"loss": [[1]], "val_loss": [1]}',
    "whitespace.csv": "   \n\n  ",
    "words_in_loss.csv": "epoch,loss,val_loss\n0,abc,1\n",
    "too_many_fields.csv": "epoch,loss\n0,1,2,3\n",
    "huge_field.csv": "epoch,loss\n1," + "9" * 200_000 + "\n",
    "prose.txt": "hello world\nthis is not a training log\n",
    "bad_middle_line.jsonl": '{"current_steps": 1, "total_steps": 3, "loss": 1}\nnot json\n{"current_steps": 2}\n',
    "array_lines.jsonl": '{"a": 1}\n[1, 2]\n',
    "inf_epoch.csv": "epoch,loss,val_loss\ninf,1,1\n",
    # the formats detected by their content
    "timm_word.csv": "epoch,train_loss,eval_loss,eval_top1\n0,1.0,oops,50\n",
    "fastai_word.csv": "epoch,train_loss,valid_loss,accuracy,time\n0,1.0,1.1,high,00:01\n",
    "fastai_too_many.csv": "epoch,train_loss,valid_loss,time\n0,1,2,3,00:01\n",
    "wandb_panel_word.csv": '"Step","r - val/loss","r - val/loss__MIN","r - val/loss__MAX"\n"1","x","1","1"\n',
    "wandb_panel_no_values.csv": '"Step","r - val/loss","r - val/loss__MIN","r - val/loss__MAX"\n"1","","",""\n',
    "wandb_history_step_word.csv": "_step,_runtime,train/global_step,eval/loss\n0,1,ten,1.0\n",
    "mmengine_word.json": '{"lr": 0.1, "loss": "nan?", "data_time": 0, "time": 0, "iter": 1, "step": 1}\n{"lr": 0.1, "loss": 1, "data_time": 0, "time": 0, "iter": 2, "step": 2}\n',
    "mmengine_val_step_list.json": '{"lr": 0.1, "loss": 1, "data_time": 0, "time": 0, "iter": 1, "step": 1}\n{"accuracy/top1": 50, "step": [1]}\n',
    "mmcv_epoch_word.json": '{"mode": "train", "epoch": "one", "iter": 1, "loss": 1}\n{"mode": "val", "epoch": 1, "iter": 1, "bbox_mAP": 0.1}\n',
    "mmcv_no_curves.json": '{"env_info": "x"}\n{"mode": "train", "epoch": 1, "iter": 1, "time": 1}\n',
    "detectron2_iteration_huge.json": '{"iteration": 1e300, "total_loss": 1}\n{"iteration": 2, "total_loss": 1}\n',
    "detectron2_loss_object.json": '{"iteration": 1, "total_loss": {"a": 1}}\n{"iteration": 2, "total_loss": 1}\n',
    "nested_history_not_lists.json": '{"history": {"loss": [1, 2], "val_loss": 5}}',
    "nested_metrics_word.json": '{"epochs": [1, 2], "metrics": {"loss": [1, "x"]}}',
    "nested_epochs_words.json": '{"epochs": ["a", "b"], "metrics": {"loss": [1, 2]}}',
    "nested_splits_nested.json": '{"train": {"loss": [[1]]}, "val": {"loss": [1]}}',
    # hand-written shapes: flat dicts of lists, titles and other delimiters, long form, unnamed rows
    "flat_x_words.json": '{"epochs": ["a", "b"], "train_loss": [1, 2]}',
    "flat_longer_than_x.json": '{"epochs": [1], "train_loss": [1, 2], "val_loss": [1]}',
    "flat_curve_word.json": '{"train_loss": [1, "x"], "val_loss": [1, 2], "n": 3}',
    "flat_curve_nested.json": '{"config": {"lr": 1}, "train_loss": [[1]], "val_loss": [1]}',
    "rows_without_names.json": "[[1, 2], [3, 4]]",
    "rows_of_words.json": '[[1, "a"], [2, "b"]]',
    "headerless.csv": "1,0.5\n2,0.4\n",
    "semicolon_word.csv": "model_history_log\nepoch;accuracy;loss\n0;0.5;abc\n",
    "title_only.csv": "model_history_log\n",
    "phase_word.csv": "epoch,phase,loss\n1,train,abc\n1,val,1\n",
    "ambiguous_columns.csv": ",loss0,loss1,acc0,acc1\n0,1,2,3,4\n",
    "fake_event_header.bin": "\x18\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00brain.Event:2 and then nothing",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_text_is_one_input_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(HOSTILE[name].encode("latin-1") if name.endswith(".bin") else HOSTILE[name].encode())
    with pytest.raises(InputError) as info:
        load_foreign(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize(
    "name, data",
    [
        ("random.bin", bytes(range(256)) * 8),
        ("latin1.csv", "epoch,loss\n1,0.5\n2,\xe9\n".encode("latin-1")),
        ("nul.csv", b"epoch,loss\n1,0\x00.5\n"),
        ("utf16.json", '{"loss": [1.0]}'.encode("utf-16")),
    ],
)
def test_binary_and_non_utf8_files(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match="binary data|not UTF-8"):
        load_foreign(path)


def test_gigantic_files_are_refused_without_reading_them(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_BYTES + 1)
    with pytest.raises(InputError, match=r"MiB is more than the 200 MiB"):
        load_foreign(path)


def test_read_cap_applies_to_what_is_read(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n" + "1,0.5\n" * 100)
    with pytest.raises(InputError, match="more than"):
        read_text(path, limit=100)


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_foreign(tmp_path / "nope.json")
    with pytest.raises(InputError, match="no training log found in this folder"):
        load_foreign(tmp_path)


def test_run_index_out_of_range_says_how_many_runs():
    with pytest.raises(InputError, match=r"holds 2 runs \(use 0..1"):
        load_foreign(FIXTURES / "llamafactory_two_runs.jsonl", run_index=2)
    with pytest.raises(InputError, match="holds 1 run "):
        load_foreign(FIXTURES / "keras_healthy.log", run_index=-2)


def test_nan_strings_and_infinities_are_kept_as_evidence(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_loss\n0,nan,1.0\n1,inf,NaN\n2,1e999,0.5\n")
    record = load_foreign(path)
    train, val = record.get("train/loss").values, record.get("val/loss").values
    assert str(train[0]) == "nan" and train[1] == float("inf") and train[2] == float("inf")
    assert str(val[1]) == "nan"


def test_a_last_line_cut_short_while_writing_is_dropped(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    lines = (FIXTURES / "llamafactory_out" / "trainer_log.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])
    record = load_foreign(path)
    assert record.meta["truncated_last_line"] is True
    assert record.get("val/loss").steps[-1] == 125


# --- fuzzing: only a RunRecord or an InputError may come out ---------------------------

_FUZZ = settings(max_examples=int(os.environ.get("PARAMDOCTOR_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SEEDS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv", ".log"))
_EVENT_SEEDS = sorted(p for p in FIXTURES.rglob("events.out.tfevents.*") if p.is_file())
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(
        ["log_history", "step", "epoch", "loss", "eval_loss", "eval_accuracy", "learning_rate", "current_steps",
         "total_steps", "val_loss", "accuracy", "format", "x", "history", "metrics", "epochs", "train", "val",
         "iteration", "total_loss", "loss_cls", "bbox/AP", "iter", "data_time", "time", "mode", "lr", "accuracy/top1",
         "eval_a_loss", "eval_a_runtime", "val_loss/dataloader_idx_0", "config", "train_losses", "val_cos", "valid",
         "dev_loss", "phase", "steps", "epoch_times", "real_val_loss", "TrainLoss"]), children, max_size=5),
    max_leaves=30,
)


def _outcome(data: bytes, name: str, **kwargs) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            result = load_foreign(path, **kwargs)
        except InputError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(result, RunRecord)


@_FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["log.csv", "trainer_state.json", "log.jsonl", "x"]))
def test_fuzz_random_bytes(data, name):
    _outcome(data, name)


@_FUZZ
@given(_json_values)
def test_fuzz_random_json(value):
    _outcome(json.dumps(value).encode(), "trainer_state.json")


@_FUZZ
@given(st.lists(_json_values, max_size=6))
def test_fuzz_random_json_lines(values):
    _outcome("\n".join(json.dumps(v) for v in values).encode(), "trainer_log.jsonl")


@_FUZZ
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.sampled_from(["cut", "insert", "replace", "duplicate"]), st.floats(0, 1), st.binary(max_size=12)), min_size=1, max_size=4),
    st.sampled_from([None, 0, -1, 1]),
)
def test_fuzz_mutated_fixtures(seed, mutations, run_index):
    data = seed.read_bytes()
    for op, where, chunk in mutations:
        at = int(where * len(data))
        if op == "cut":
            data = data[:at]
        elif op == "insert":
            data = data[:at] + chunk + data[at:]
        elif op == "replace":
            data = data[:at] + chunk + data[at + len(chunk) :]
        else:
            data = data[:at] + data[at : at + 200] + data[at:]
    _outcome(data, seed.name, run_index=run_index)


@_FUZZ
@given(st.dictionaries(st.sampled_from(["train/loss", "val/loss", "val/acc", "step/loss", "bad key", "val/x", "step", "epoch"]), st.text(max_size=12), max_size=3))
def test_fuzz_mappings(mapping):
    _outcome((FIXTURES / "custom_curves.csv").read_bytes(), "curves.csv", mapping=mapping)


@_FUZZ
@given(
    st.sampled_from(_EVENT_SEEDS),
    st.lists(st.tuples(st.sampled_from(["cut", "flip", "insert"]), st.floats(0, 1), st.binary(min_size=1, max_size=8)), min_size=1, max_size=3),
)
def test_fuzz_mutated_event_files(seed, mutations):
    data = seed.read_bytes()
    for op, where, chunk in mutations:
        at = int(where * len(data))
        if op == "cut":
            data = data[:at]
        elif op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ chunk[0]]) + data[at + 1 :]
        else:
            data = data[:at] + chunk + data[at:]
    _outcome(data, seed.name)


def _record(payload: bytes) -> bytes:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


@_FUZZ
@given(st.lists(st.binary(max_size=60), max_size=6))
def test_fuzz_event_records_with_valid_checksums_and_random_payloads(payloads):
    """Framing and checksums pass, so the protobuf and tensor decoders see arbitrary bytes."""
    first = _record(b"\x09" + b"\x00" * 8 + b"\x1a\x0dbrain.Event:2")  # wall_time, file_version
    _outcome(first + b"".join(_record(p) for p in payloads), "events.out.tfevents.1.host")


# --- the hand-written shapes: delimiters, title lines, flat dicts of lists, long form -------------------------

_HAND_ROLLED_SEEDS = [
    ",train,valid\n0,0.35,0.99\n1,0.30,1.09\n",
    ",ep,train,valid,total\n0,1,54.9,16.3,71.2\n1,2,54.2,16.2,70.4\n",
    ",loss0,loss1,acc0,acc1\n0,1.75,1.76,81.7,79.1\n",
    "model_history_log\nepoch;accuracy;loss;val_accuracy;val_loss\n0;0.41;1.58;0.80;0.65\n1;0.87;0.40;0.91;0.30\n",
    "epoch\ttrain_loss\tval_loss\n1\t1.0\t1.2\n2\t0.8\t1.1\n",
    "stage,epoch,phase,loss,accuracy\ns1,1,train,0.48,0.77\ns1,1,val,0.42,0.81\ns2,1,train,0.4,0.8\n",
    json.dumps({"config": {"epochs": 2, "lr": 0.1}, "epochs": [1, 2], "train_loss": [2.8, 1.9], "val_wer": [0.9, 0.7],
                "test_loss": 0.18}),
    json.dumps({"train_loss": [8.6, 8.5], "val_loss": [8.6, 8.57], "epoch_times": [1007.9, 1003.8], "total": 2011.7}),
    json.dumps({"epochs": [1, 2], "train": [37.0, 36.6], "val": [16.0, 15.1]}),
    json.dumps([{"epoch": 1, "train_cos": 0.63, "val_cos": 0.67}, {"epoch": 2, "train_cos": 0.7, "val_cos": 0.69}]),
    json.dumps([[15, 2.18, 2.17], [30, 2.04, 2.09]]),
]
_cells = st.sampled_from(
    ["epoch", "ep", "step", "loss", "val_loss", "train", "valid", "val_f1", "phase", "train ", "val", "x", "1", "0",
     "0.5", "-2", "nan", "", "abc", '"a;b"', '"1,5"', "model_history_log"]
)


@_FUZZ
@given(st.sampled_from([",", ";", "\t"]), st.booleans(), st.lists(st.lists(_cells, min_size=1, max_size=5), min_size=1, max_size=6))
def test_fuzz_delimited_text_with_or_without_a_title(delimiter, title, rows):
    text = ("model_history_log\n" if title else "") + "\n".join(delimiter.join(cells) for cells in rows) + "\n"
    _outcome(text.encode(), "log.csv")


_flat_values = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-5, 5), st.floats(), st.text(max_size=3)), max_size=4),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=3),
    st.floats(), st.integers(), st.text(max_size=4), st.booleans(),
    st.dictionaries(st.sampled_from(["epochs", "lr", "batch_size"]), st.integers(-2, 50), max_size=3),
)


@_FUZZ
@given(st.dictionaries(st.sampled_from(
    ["epochs", "epoch", "steps", "train", "val", "valid", "train_loss", "val_losses", "val_cos", "val_wer", "losses",
     "config", "args", "test_loss", "epoch_times", "note"]), _flat_values, max_size=7))
def test_fuzz_flat_dicts_of_lists(data):
    _outcome(json.dumps(data).encode(), "training_history.json")


@_FUZZ
@given(
    st.sampled_from(_HAND_ROLLED_SEEDS),
    st.lists(st.tuples(st.sampled_from(["cut", "insert", "replace", "duplicate"]), st.floats(0, 1), st.binary(max_size=8)), min_size=1, max_size=3),
    st.sampled_from([None, {"val/loss": "loss1"}, {"train/loss": "train"}, {"step": "0", "val/loss": "2"}, {"epoch": "ep"}]),
)
def test_fuzz_mutated_hand_rolled_logs(seed, mutations, mapping):
    data = seed.encode()
    for op, where, chunk in mutations:
        at = int(where * len(data))
        if op == "cut":
            data = data[:at]
        elif op == "insert":
            data = data[:at] + chunk + data[at:]
        elif op == "replace":
            data = data[:at] + chunk + data[at + len(chunk) :]
        else:
            data = data[:at] + data[at : at + 40] + data[at:]
    _outcome(data, "log.json" if seed.startswith(("{", "[")) else "log.csv", mapping=mapping)
