"""Config files, overrides and every error path: one line naming key, value and expectation."""

from __future__ import annotations

import pytest

from paramdoctor.config import apply_overrides, dump_yaml, flatten, known_keys, load_config, validate
from paramdoctor.config.loading import read_config_file
from paramdoctor.errors import ConfigError


def test_defaults_are_the_seed_recipe():
    cfg = load_config()
    assert cfg.optimizer.name == "adamw"
    assert cfg.optimizer.backbone_lr is None  # auto: see tests/config/test_resolve.py
    assert cfg.optimizer.lr == pytest.approx(1e-3)
    assert cfg.optimizer.weight_decay == pytest.approx(5e-4)
    assert cfg.scheduler.name == "cosine"
    assert cfg.data.augment is True
    assert cfg.early_stopping.monitor == "val/acc" and cfg.early_stopping.restore_best_weights
    assert cfg.data.dataset == "digits"


def test_overrides_are_typed():
    cfg = load_config(None, ["optimizer.lr=3e-4", "data.batch_size=32", "trainer.gradient_clip_val=null", "data.augment=false"])
    assert isinstance(cfg.optimizer.lr, float) and cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.data.batch_size == 32
    assert cfg.trainer.gradient_clip_val is None
    assert cfg.data.augment is False


def test_yaml_exponent_floats_load_as_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 1e-4\n  backbone_lr: 5E-6\n  weight_decay: 1.0e-2\n")
    cfg = load_config(path)
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    assert cfg.optimizer.backbone_lr == pytest.approx(5e-6)
    assert cfg.optimizer.weight_decay == pytest.approx(1e-2)
    assert read_config_file(path)["optimizer"]["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lrr=1", "unknown config key (did you mean 'optimizer.lr'?)"),
        ("trainer.max_epoch=3", "did you mean 'trainer.max_epochs'?"),
        ("optimizer.lr=-1", "optimizer.lr: Input should be greater than 0, got -1"),
        ("data.batch_size=0", "data.batch_size: Input should be greater than or equal to 1, got 0"),
        ("early_stopping.patience=-1", "early_stopping.patience: Input should be greater than or equal to 0, got -1"),
        ("data.batch_size=abc", "data.batch_size: Input should be a valid integer"),
        ("optimizer.name=rmsprop", "optimizer.name: Input should be 'adamw', 'adam' or 'sgd', got 'rmsprop'"),
        ("early_stopping.mode=min", "mode must be 'max' when monitoring val/acc"),
        ("model.freeze_backbone_epochs=50", "model.freeze_backbone_epochs (50) must be below trainer.max_epochs (20)"),
        ("trainer.device=tpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        ("optimizer.lr", "expected key=value"),
    ],
)
def test_bad_overrides_fail_with_one_line(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  weigth_decay: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'optimizer.weigth_decay' \(did you mean 'optimizer.weight_decay'\?\)"):
        load_config(path)


def test_unknown_section_in_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimiser:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'optimiser.lr'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("optimizer: [\n", "invalid YAML"), ("- 1\n- 2\n", "must be a mapping"), ("optimizer:\n  lr: [1, 2]\n", "optimizer.lr")],
)
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("no/such/config.yaml")


def test_dump_round_trips_through_load(tmp_path):
    cfg = load_config(None, ["optimizer.lr=2e-3", "optimizer.betas=[0.8, 0.99]", "experiment.run_name=x"])
    path = tmp_path / "next.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_flatten_and_known_keys_agree():
    flat = flatten(load_config().model_dump(mode="json"))
    assert set(flat) == set(known_keys())
    assert "optimizer.lr" in flat and "early_stopping.patience" in flat


def test_apply_overrides_does_not_mutate_input():
    tree = {"optimizer": {"lr": 0.1}}
    out = apply_overrides(tree, ["optimizer.lr=0.2"])
    assert tree["optimizer"]["lr"] == 0.1 and out["optimizer"]["lr"] == 0.2


def test_validate_rejects_extra_keys():
    with pytest.raises(ConfigError, match="unknown config key 'trainer.epochs'"):
        validate({"trainer": {"epochs": 3}})
