"""Several evaluation sets: each named set under val/<set>/..., listed in meta["eval_sets"] in the file's order."""

from __future__ import annotations

import json

import pytest

from paramdoctor import keys
from paramdoctor.importers import load_foreign, normalize_metric_names
from paramdoctor.importers.eval_sets import set_metric
from paramdoctor.record import Series
from tests.importers.helpers import fixture


def test_hf_trainer_state_with_two_eval_datasets():
    record = load_foreign(fixture("hf_two_eval_sets"))  # eval_dataset={"mnli": ..., "mnli-mm": ...}
    assert record.meta["eval_sets"] == ["mnli", "mnli-mm"]
    assert record.x_unit == "epoch" and record.meta["evaluations"] == 2  # two rows per evaluation, one per set
    assert record.get("val/mnli/loss").values.tolist() == pytest.approx([0.5861380100250244, 0.4010787308216095])
    assert record.get("val/mnli-mm/acc").values.tolist() == pytest.approx([0.695, 0.73])
    assert record.get("val/mnli/loss").steps.tolist() == [2, 4]
    assert keys.VAL_LOSS not in record.series and keys.VAL_ACC not in record.series  # two sets, no plain eval_loss
    assert not any(k.endswith(("runtime", "samples_per_second", "steps_per_second")) for k in record.series)


def test_hf_tensorboard_names_of_the_same_run():
    record = load_foreign(fixture("hf_two_eval_sets/runs"))  # eval/mnli_loss, eval/mnli-mm_accuracy ...
    assert record.meta["eval_sets"] == ["mnli", "mnli-mm"]
    state = load_foreign(fixture("hf_two_eval_sets"))
    for key in ("val/mnli/loss", "val/mnli/acc", "val/mnli-mm/loss", "val/mnli-mm/acc"):
        assert record.get(key).values.tolist() == pytest.approx(state.get(key).values.tolist(), rel=1e-6)


@pytest.mark.parametrize("path", ["lightning_two_val/metrics.csv", "lightning_two_val/tb"])
def test_lightning_two_val_dataloaders(path):
    record = load_foreign(fixture(path))
    assert record.source == "lightning" and record.x_unit == "epoch"
    assert record.meta["eval_sets"] == ["dataloader_idx_0", "dataloader_idx_1"]  # numbered order, whatever the log's
    assert record.get("val/dataloader_idx_0/loss").values[0] == pytest.approx(1.2629247903823853)
    assert record.get("val/dataloader_idx_1/acc").values[0] == pytest.approx(0.46484375)
    assert record.get("val/dataloader_idx_1/loss").steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert keys.VAL_LOSS not in record.series


def test_one_named_set_also_fills_the_plain_keys(tmp_path):
    lines = [
        {"loss": 1.0, "step": 10, "epoch": 0.5},
        {"eval_squad_loss": 0.9, "eval_squad_accuracy": 0.6, "eval_squad_runtime": 2.0, "step": 10, "epoch": 0.5},
        {"loss": 0.8, "step": 20, "epoch": 1.0},
        {"eval_squad_loss": 0.7, "eval_squad_accuracy": 0.7, "eval_squad_runtime": 2.0, "step": 20, "epoch": 1.0},
    ]
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": lines}))
    record = load_foreign(path)
    assert record.meta["eval_sets"] == ["squad"]
    assert record.get(keys.VAL_LOSS).values.tolist() == [0.9, 0.7] == record.get("val/squad/loss").values.tolist()
    assert record.get(keys.VAL_ACC).values.tolist() == [0.6, 0.7]


def test_named_sets_beside_a_plain_one(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val/ood/loss": 1.5 / e, "val/ood/acc": 0.4,
             "eval/shifted/f1": 0.3} for e in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = load_foreign(path)
    assert record.meta["eval_sets"] == ["ood", "shifted"]
    assert record.get(keys.VAL_LOSS).values.tolist() == pytest.approx([1.1, 0.55, 1.1 / 3])  # the plain set stays itself
    assert record.get("val/ood/loss").values.tolist() == pytest.approx([1.5, 0.75, 0.5])
    assert record.get("val/shifted/f1").values.tolist() == [0.3, 0.3, 0.3]


def test_a_single_plain_set_has_no_eval_sets_meta():
    assert "eval_sets" not in load_foreign(fixture("hf_healthy/trainer_state.json")).meta


@pytest.mark.parametrize(
    "name, sets, expected",
    [
        ("eval_mnli-mm_loss", {"mnli", "mnli-mm"}, ("mnli-mm", "loss")),
        ("eval_mnli_accuracy", {"mnli", "mnli-mm"}, ("mnli", "acc")),
        ("eval_mnli_runtime", {"mnli"}, ("mnli", None)),
        ("eval/mnli_f1", {"mnli"}, ("mnli", "f1")),
        ("eval_loss", {"mnli"}, None),
        ("val/ood/loss", (), ("ood", "loss")),
        ("eval/ood/accuracy", (), ("ood", "acc")),
        ("val_loss/dataloader_idx_1", (), ("dataloader_idx_1", "loss")),
        ("val_acc/dataloader_idx_0", (), ("dataloader_idx_0", "acc")),
        ("val/loss/dataloader_idx_2", (), ("dataloader_idx_2", "loss")),
        ("train_loss/dataloader_idx_0", (), None),
        ("val/loss", (), None),
        ("val/my set!/loss", (), ("my set_", "loss")),
        ("real_val_loss", (), ("real", "loss")),  # hand-written: the set's name first
        ("font_val_acc", (), ("font", "acc")),
        ("ema_valid_f1", (), ("ema", "f1")),
        ("best_val_loss", (), None),  # a running best, not a set
        ("avg_val_loss", (), None),
        ("train_val_loss", (), None),
    ],
)
def test_set_names(name, sets, expected):
    assert set_metric(name, sets) == expected


def test_mlflow_runs_logged_by_lightning_with_two_dataloaders():
    s = lambda v: Series([1, 2], v)  # noqa: E731
    series, tool = normalize_metric_names({
        "val_loss/dataloader_idx_0": s([1.0, 0.9]), "val_loss/dataloader_idx_1": s([1.2, 1.1]),
        "train_loss_epoch": s([1.1, 1.0]), "epoch": s([0, 1]),
    })
    assert tool == "lightning"
    assert series["val/dataloader_idx_0/loss"].values.tolist() == [1.0, 0.9]
    assert series["val/dataloader_idx_1/loss"].values.tolist() == [1.2, 1.1]


def test_hf_best_metric_of_a_named_set_becomes_the_monitor(tmp_path):
    data = json.loads(fixture("hf_two_eval_sets/trainer_state.json").read_text())
    data["best_metric"] = 0.73  # metric_for_best_model="eval_mnli-mm_accuracy"
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(data))
    assert load_foreign(path).meta["monitor"] == "val/mnli-mm/acc"


def test_hand_written_sets_named_first(tmp_path):
    path = tmp_path / "train_log.csv"
    path.write_text(
        "epoch,train_loss,train_acc,real_val_loss,real_val_acc,font_val_loss,font_val_acc,seconds\n"
        "1,2.0,68.3,0.94,94.4,1.75,70.7,106\n2,0.93,96.2,0.93,95.6,1.62,74.7,77\n"
    )
    record = load_foreign(path)
    assert record.meta["eval_sets"] == ["real", "font"]
    assert sorted(record.series) == [
        "train/acc", "train/loss", "val/font/acc", "val/font/loss", "val/real/acc", "val/real/loss",
    ]
    assert record.get("val/font/loss").values.tolist() == [1.75, 1.62] and record.get("val/font/loss").steps.tolist() == [1, 2]
    assert keys.VAL_LOSS not in record.series  # two sets, no plain one
