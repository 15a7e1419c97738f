"""Every usual learning-rate name lands under step/lr/<group> or epoch/lr/<group>."""

from __future__ import annotations

import pytest

from paramdoctor import keys
from paramdoctor.importers import load_foreign
from paramdoctor.importers.names import LR, generic_role, hf_rewritten_role, lr_role
from tests.importers.helpers import fixture


@pytest.mark.parametrize(
    "name, group",
    [
        ("lr", "default"), ("learning_rate", "default"), ("train/lr", "default"), ("train/learning_rate", "default"),
        ("optimizer/lr", "default"), ("optim/lr", "default"), ("LR", "default"),
        ("lr-AdamW", "default"), ("lr-SGD/pg1", "pg1"), ("lr-Adam/backbone", "backbone"), ("lr/pg0", "pg0"),
        ("optimizer/lr/pg2", "pg2"), ("generator.lr", "generator"),
    ],
)
def test_learning_rate_names(name, group):
    role = lr_role(name)
    assert role is not None and role.key == LR and role.lr_group == group
    assert generic_role(name) == role


@pytest.mark.parametrize("name", ["lr-Adam-momentum", "lr-AdamW/pg1-momentum", "lr-SGD-weight_decay", "base_lr", "lr_scale", "momentum"])
def test_not_learning_rates(name):
    assert lr_role(name) is None and generic_role(name) is None


def test_hf_rewritten_learning_rate_is_per_step():
    role = hf_rewritten_role("train/learning_rate")
    assert role.key == LR and role.level == "step" and role.step_key() == keys.step_lr("default")


@pytest.mark.parametrize(
    "path, key, first",
    [
        ("tb_lightning", keys.epoch_lr("default"), 3e-3),  # Lightning lr-AdamW
        ("tb_hf", keys.step_lr("default"), 8e-4),  # HF train/learning_rate
        ("timm_summary/summary.csv", keys.epoch_lr("default"), 1e-4),  # timm lr
        ("mmengine_cls", keys.step_lr("default"), 0.05),  # MMEngine lr
        ("mmcv_work_dir", keys.step_lr("default"), 0.00402),  # mmcv lr (linear warmup)
        ("detectron2_out", keys.step_lr("default"), 0.004016),  # Detectron2 lr
        ("keras_healthy.log", keys.epoch_lr("default"), 1e-3),  # Keras learning_rate
        ("nested_epochs_metrics.json", keys.epoch_lr("default"), 1e-3),  # a script's lr
        ("wandb_history.csv", keys.step_lr("default"), 1.2e-5),  # HF via W&B train/learning_rate
    ],
)
def test_each_format_keeps_its_learning_rate(path, key, first):
    record = load_foreign(fixture(path))
    assert record.get(key).values[0] == pytest.approx(first, rel=1e-3)


def test_keras_lr_name_and_lightning_groups(tmp_path):
    path = tmp_path / "training.log"
    path.write_text("epoch,loss,lr,val_loss\n0,1.0,0.01,1.1\n1,0.8,0.005,1.0\n")
    assert load_foreign(path).get(keys.epoch_lr("default")).values.tolist() == [0.01, 0.005]
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,lr-SGD/pg0,lr-SGD/pg1,lr-SGD/pg0-momentum,train_loss_step,val_loss\n"
                    "0,1,0.1,0.01,0.9,2.0,\n0,2,0.1,0.01,0.9,1.9,\n0,2,,,,,1.5\n1,3,0.05,0.005,0.9,1.7,\n1,4,0.05,0.005,0.9,1.6,\n1,4,,,,,1.4\n")
    record = load_foreign(path)
    assert record.get(keys.step_lr("pg0")).values.tolist() == [0.1, 0.1, 0.05, 0.05]
    assert record.get(keys.step_lr("pg1")).values.tolist() == [0.01, 0.01, 0.005, 0.005]
    assert not any("momentum" in k for k in record.series)
