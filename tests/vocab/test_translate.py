"""translate_changes: the prescription in each tool's own vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from paramdoctor.diagnosis import Change
from paramdoctor.importers import load_foreign
from paramdoctor.vocab import ToolChange, supported_tools, translate_changes

FIXTURES = Path(__file__).parents[1] / "importers" / "fixtures"


def _c(key, old, new) -> Change:
    return Change(key=key, old=old, new=new, reason=f"because of {key}", rule="PD000")


LR_CUT = _c("optimizer.lr", 1e-3, 3e-4)  # paramdoctor's default 1e-3 cut to 0.3x
MORE_EPOCHS = _c("trainer.max_epochs", 20, 30)
BACKBONE = _c("optimizer.backbone_lr", 1e-4, 5e-5)
WARMUP = _c("scheduler.warmup_epochs", 0.0, 1.0)
PATIENCE = _c("early_stopping.patience", 5, 3)
EARLY_STOP_ON = _c("early_stopping.enabled", False, True)
CLIP = _c("trainer.gradient_clip_val", None, 1.0)
ACCUMULATE = _c("trainer.accumulate_grad_batches", 1, 2)
BATCH = _c("data.batch_size", 64, 32)
DROPOUT = _c("model.dropout", 0.0, 0.2)
COSINE = _c("scheduler.name", "constant", "cosine")


def _by_source(items: list[ToolChange]) -> dict[str, list[ToolChange]]:
    out: dict[str, list[ToolChange]] = {}
    for item in items:
        out.setdefault(item.source_key, []).append(item)
    return out


def test_hf_trainer_relative_changes_start_from_the_logged_peak_learning_rate():
    record = load_foreign(FIXTURES / "hf_healthy" / "trainer_state.json")
    params = {**record.params, **record.meta}
    out = _by_source(translate_changes([LR_CUT, MORE_EPOCHS, BATCH, ACCUMULATE], "hf_trainer", params))
    lr = out["optimizer.lr"][0]
    assert (lr.key, lr.old, lr.new, lr.factor) == ("learning_rate", 1.92e-05, 5.76e-06, pytest.approx(0.3))
    assert lr.reason == "because of optimizer.lr"
    epochs = out["trainer.max_epochs"][0]
    assert (epochs.key, epochs.old, epochs.new) == ("num_train_epochs", 5, 8)  # 5 x 1.5, rounded
    assert "max_steps" in epochs.note
    batch = out["data.batch_size"][0]
    assert (batch.key, batch.old, batch.new) == ("per_device_train_batch_size", 32, 16)
    accumulate = out["trainer.accumulate_grad_batches"][0]
    assert (accumulate.key, accumulate.new) == ("gradient_accumulation_steps", None)  # its value is not in the state file
    assert "multiply your current gradient_accumulation_steps by 2" in accumulate.note


def test_hf_trainer_has_no_backbone_lr_and_says_so():
    (item,) = translate_changes([BACKBONE], "hf_trainer")
    assert item.key == "optimizer.backbone_lr" and item.new is None
    assert item.note.startswith("no equivalent") and "create_optimizer" in item.note


def test_hf_trainer_absolute_settings_and_early_stopping():
    params = {"num_train_epochs": 2, "steps_per_epoch": 120, "eval_steps": 20}
    out = _by_source(translate_changes([WARMUP, CLIP, COSINE, PATIENCE, EARLY_STOP_ON, DROPOUT], "hf_trainer", params))
    assert (out["scheduler.warmup_epochs"][0].key, out["scheduler.warmup_epochs"][0].new) == ("warmup_ratio", 0.5)
    assert (out["trainer.gradient_clip_val"][0].key, out["trainer.gradient_clip_val"][0].new) == ("max_grad_norm", 1.0)
    assert (out["scheduler.name"][0].key, out["scheduler.name"][0].new) == ("lr_scheduler_type", "cosine")
    patience = out["early_stopping.patience"][0]
    assert patience.key == "transformers.EarlyStoppingCallback(early_stopping_patience=...)"
    assert patience.new == 18 and "18 evaluations every 20 steps" in patience.note  # 3 epochs x 6 evaluations
    keys = [t.key for t in out["early_stopping.enabled"]]
    assert keys == ["callbacks", "load_best_model_at_end"] and out["early_stopping.enabled"][1].new is True
    assert out["model.dropout"][0].note.startswith("no equivalent")


def test_hf_warmup_without_epochs_uses_steps():
    (item,) = translate_changes([WARMUP], "hf_trainer", {"steps_per_epoch": 50})
    assert (item.key, item.new) == ("warmup_steps", 50)


def test_llamafactory_yaml_keys():
    out = _by_source(translate_changes([LR_CUT, DROPOUT, PATIENCE, BACKBONE, MORE_EPOCHS], "llamafactory", {"peak_lr": 1e-4}))
    assert (out["optimizer.lr"][0].key, out["optimizer.lr"][0].new) == ("learning_rate", 3e-5)
    assert (out["model.dropout"][0].key, out["model.dropout"][0].new) == ("lora_dropout", 0.2)
    assert (out["early_stopping.patience"][0].key, out["early_stopping.patience"][0].new) == ("early_stopping_steps", 3)
    assert "loraplus_lr_ratio" in out["optimizer.backbone_lr"][0].note
    assert out["trainer.max_epochs"][0].key == "num_train_epochs"


def test_lightning_trainer_and_callback_arguments():
    record = load_foreign(FIXTURES / "lightning_overfit")
    params = {**record.params, **record.meta}
    out = _by_source(translate_changes([LR_CUT, MORE_EPOCHS, ACCUMULATE, CLIP, PATIENCE, WARMUP, COSINE], "lightning", params))
    lr = out["optimizer.lr"][0]
    assert lr.key == "configure_optimizers: lr" and lr.old == 0.001 and lr.new == 0.0003  # hparams.yaml lr
    assert "LightningModule.configure_optimizers" in lr.note
    assert (out["trainer.max_epochs"][0].key, out["trainer.max_epochs"][0].new) == ("max_epochs", 18)
    assert out["trainer.accumulate_grad_batches"][0].key == "accumulate_grad_batches"
    assert (out["trainer.gradient_clip_val"][0].key, out["trainer.gradient_clip_val"][0].new) == ("gradient_clip_val", 1.0)
    assert out["early_stopping.patience"][0].key == "EarlyStopping(patience=...)"
    assert "no warmup setting" in out["scheduler.warmup_epochs"][0].note
    assert out["scheduler.name"][0].new == "CosineAnnealingLR"


def test_keras_fit_optimizer_and_callbacks():
    record = load_foreign(FIXTURES / "keras_healthy.log")
    params = {**record.params, **record.meta}
    out = _by_source(translate_changes([LR_CUT, MORE_EPOCHS, BATCH, PATIENCE, BACKBONE, CLIP], "keras", params))
    lr = out["optimizer.lr"][0]
    assert (lr.key, lr.old, lr.new) == ("optimizer.learning_rate", 0.001, 0.0003)  # the logged learning_rate
    assert (out["trainer.max_epochs"][0].key, out["trainer.max_epochs"][0].new) == ("epochs", 15)  # 10 run x 1.5
    assert out["data.batch_size"][0].key == "batch_size"
    assert out["early_stopping.patience"][0].key == "EarlyStopping(patience=...)"
    assert out["optimizer.backbone_lr"][0].note.startswith("no equivalent")
    assert out["trainer.gradient_clip_val"][0].key == "optimizer.global_clipnorm"


def test_ultralytics_train_arguments_from_args_yaml():
    record = load_foreign(FIXTURES / "ultralytics_cls")
    params = {**record.params, **record.meta}
    out = _by_source(translate_changes([LR_CUT, MORE_EPOCHS, BATCH, WARMUP, CLIP], "ultralytics", params))
    assert (out["optimizer.lr"][0].key, out["optimizer.lr"][0].old, out["optimizer.lr"][0].new) == ("lr0", 0.01, 0.003)
    assert (out["trainer.max_epochs"][0].key, out["trainer.max_epochs"][0].new) == ("epochs", 15)
    assert (out["data.batch_size"][0].key, out["data.batch_size"][0].new) == ("batch", 32)
    assert (out["scheduler.warmup_epochs"][0].key, out["scheduler.warmup_epochs"][0].new) == ("warmup_epochs", 1.0)
    assert out["trainer.gradient_clip_val"][0].note.startswith("no equivalent")


def test_integer_settings_keep_the_direction_after_rounding():
    (item,) = translate_changes([_c("trainer.max_epochs", 20, 22)], "keras", {"epochs": 3})
    assert item.new == 4  # 3 x 1.1 = 3.3 would round back to 3


def test_a_weight_decay_of_zero_takes_the_prescribed_value():
    (item,) = translate_changes([_c("optimizer.weight_decay", 5e-4, 1e-3)], "hf_trainer", {"weight_decay": 0})
    assert (item.key, item.new) == ("weight_decay", 1e-3)


def test_generic_and_unknown_tools_keep_paramdoctor_keys():
    (same,) = translate_changes([LR_CUT], "csv")
    assert (same.key, same.old, same.new, same.note) == ("optimizer.lr", 1e-3, 3e-4, "")
    (other,) = translate_changes([LR_CUT], "fastai")
    assert other.key == "optimizer.lr" and "no vocabulary for tool 'fastai'" in other.note
    assert set(supported_tools()) == {"hf_trainer", "llamafactory", "lightning", "keras", "ultralytics"}
