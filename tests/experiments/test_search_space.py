"""Search spaces: the default one around a config, the YAML schema and its one-line errors, params <-> configs."""

from __future__ import annotations

import optuna
import pytest

from paramdoctor.config import load_config
from paramdoctor.errors import ConfigError
from paramdoctor.experiments.search_space import RATIO_KEY, Dimension, default_space, load_space


def _write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_default_space_sits_around_the_config_and_holds_its_values():
    base = load_config(None, ["optimizer.lr=2e-3", "data.batch_size=32", "trainer.max_epochs=10"])
    space = default_space(base)
    assert space.keys == ["optimizer.lr", RATIO_KEY, "optimizer.weight_decay", "data.batch_size", "model.dropout",
                          "scheduler.warmup_epochs", "trainer.label_smoothing"]
    lr = space["optimizer.lr"]
    assert lr.log and lr.low == pytest.approx(2e-3 / 30, rel=1e-2) and lr.high == pytest.approx(0.06)
    assert space[RATIO_KEY].high == 1.0 and space[RATIO_KEY].log  # from scratch the backbone trains at lr: ratio 1
    wd = space["optimizer.weight_decay"]
    assert wd.log and wd.low == 1e-6 and wd.high == pytest.approx(0.05)  # 1e-6 is "off" on a log scale
    assert space["data.batch_size"].choices == (8, 16, 32, 64, 128)
    assert (space["scheduler.warmup_epochs"].low, space["scheduler.warmup_epochs"].high) == (0.0, 2.0)
    params = space.params_of(base)
    assert params == {"optimizer.lr": 2e-3, RATIO_KEY: 1.0, "optimizer.weight_decay": 5e-4, "data.batch_size": 32,
                      "model.dropout": 0.0, "scheduler.warmup_epochs": 0.0, "trainer.label_smoothing": 0.0}
    assert space.config_for(base, params) == base.model_copy(
        update={"optimizer": base.optimizer.model_copy(update={"backbone_lr": 2e-3})})


def test_fine_tuning_searches_the_backbone_as_a_ratio_below_one_and_subsets_cap_the_batch():
    base = load_config(None, ["model.weights=/nonexistent.pt", "data.subset=100", "scheduler.name=onecycle"])
    space = default_space(base)
    assert space[RATIO_KEY].low == pytest.approx(0.1 / 30, rel=1e-2) and space[RATIO_KEY].high == 1.0
    assert space.params_of(base)[RATIO_KEY] == pytest.approx(0.1)  # auto: a tenth of the head's LR
    assert max(space["data.batch_size"].choices) == 64  # current value kept; none above half the subset beyond it
    assert "scheduler.pct_start" in space.keys and "scheduler.warmup_epochs" not in space.keys
    config = space.config_for(base, {"optimizer.lr": 0.01, RATIO_KEY: 0.05})
    assert config.optimizer.backbone_lr == pytest.approx(5e-4)


def test_a_space_file_is_read_validated_and_suggested_through_optuna(tmp_path):
    path = _write(tmp_path, """
optimizer.lr: {type: float, low: 1.0e-5, high: 1.0, log: true}
data.batch_size: {type: categorical, choices: [16, 32, 64]}
trainer.max_epochs: {type: int, low: 2, high: 10, step: 2}
optimizer.name: {type: categorical, choices: [adamw, sgd]}
model.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
""")
    base = load_config(None, [])
    space = load_space(path, base)
    assert space.source == str(path) and space.keys[0] == "optimizer.lr"
    assert space["trainer.max_epochs"] == Dimension("trainer.max_epochs", "int", 2, 10, step=2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = space.suggest(trial)
    assert 1e-5 <= params["optimizer.lr"] <= 1.0 and params["data.batch_size"] in (16, 32, 64)
    assert params["trainer.max_epochs"] in (2, 4, 6, 8, 10) and params["optimizer.name"] in ("adamw", "sgd")
    config = space.config_for(base, params)
    assert config.trainer.max_epochs == params["trainer.max_epochs"]
    reread = load_space(_write(tmp_path, space.to_yaml()), base)  # the dump is a valid space file
    assert reread.to_dict() == space.to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer.lrr: {type: float, low: 1.0e-5, high: 1.0}", "entry 'optimizer.lrr': unknown config key (did you mean 'optimizer.lr'?)"),
        ("optimizer.lr: {type: float, low: 1.0e-5, high: 20.0, log: true}", "entry 'optimizer.lr': 20.0 is not a valid value"),
        ("optimizer.lr: {type: float, low: 0.0, high: 1.0, log: true}", "entry 'optimizer.lr': log: true needs low > 0"),
        ("optimizer.lr: {type: float, low: 0.1, high: 0.01}", "entry 'optimizer.lr': low must be below high"),
        ("optimizer.lr: {type: float, low: 1.0e-5, hihg: 1.0}", "entry 'optimizer.lr': unknown field 'hihg' (did you mean 'high'?)"),
        ("optimizer.lr: {type: real, low: 1.0e-5, high: 1.0}", "entry 'optimizer.lr': type must be one of float, int, categorical"),
        ("data.batch_size: {type: float, low: 8, high: 64}", "entry 'data.batch_size': the key is an integer; use type: int"),
        ("data.augment: {type: int, low: 0, high: 1}", "entry 'data.augment': type int needs a numeric key"),
        ("optimizer.name: {type: categorical, choices: [adamw, lion]}", "entry 'optimizer.name': 'lion' is not a valid value"),
        ("optimizer.name: {type: categorical, choices: []}", "entry 'optimizer.name': categorical needs choices"),
        ("data.val_fraction: {type: float, low: 0.1, high: 0.3}", "entry 'data.val_fraction': cannot be tuned"),
        ("experiment.name: {type: categorical, choices: [a, b]}", "entry 'experiment.name': cannot be tuned"),
        ("scheduler.warmup_epochs: {type: float, low: 0.0, high: 30.0}", "entry 'scheduler.warmup_epochs': 30.0 is not a valid value"),
        ("optimizer.lr: 0.01", "entry 'optimizer.lr': expected a mapping"),
        ("- optimizer.lr", "a search space is a mapping of dotted config keys"),
        ("optimizer.lr: {type: float, low: 1.0e-5, high: 1.0\n", "invalid YAML"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_the_file_and_entry(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_space(path, load_config(None, []))
    line = str(info.value)
    assert line.startswith(str(path)) and message in line and "\n" not in line
    assert info.value.exit_code == 2


def test_both_backbone_keys_at_once_are_refused(tmp_path):
    path = _write(tmp_path, f"optimizer.backbone_lr: {{type: float, low: 1.0e-5, high: 1.0e-3}}\n"
                            f"{RATIO_KEY}: {{type: float, low: 0.01, high: 1.0, log: true}}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_space(path, load_config(None, []))


def test_clip_moves_a_value_into_its_dimension():
    assert Dimension("optimizer.lr", "float", 1e-4, 1e-2, log=True).clip(0.5) == 1e-2
    assert Dimension("model.dropout", "float", 0.0, 0.5, step=0.1).clip(0.23) == pytest.approx(0.2)
    assert Dimension("trainer.max_epochs", "int", 2, 10).clip(40) == 10
    assert Dimension("data.batch_size", "categorical", choices=(16, 32, 64)).clip(48) in (32, 64)
    assert Dimension("data.batch_size", "categorical", choices=(16, 32, 64)).clip(200) == 64
    assert Dimension("optimizer.name", "categorical", choices=("adamw", "sgd")).clip("adam") == "adamw"
