"""Config files, overrides and every error path: one line naming key, value and expectation."""

from __future__ import annotations

import os

import pytest

from paramdoctor.config import apply_overrides, dump_yaml, flatten, known_keys, load_config, validate
from paramdoctor.config.loading import MAX_DEPTH, MAX_FILE_BYTES, load_yaml_text, read_config_file, read_text_file
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


# --- what a user's YAML may ask of the reader ------------------------------------------

# The classic "billion laughs": 9 levels of 9 aliases expand to 9**9 strings from under 800 bytes.
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{','.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    assert len(ALIAS_BOMB.encode()) < 800
    with pytest.raises(ConfigError, match=r"bomb.yaml: anchors and aliases .* expand the document by [\d,]+ nodes"):
        load_yaml_text(ALIAS_BOMB, "bomb.yaml")
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match="anchors and aliases"):
        read_config_file(path)
    # a few anchors, aliases and merge keys, as configs use them, stay welcome
    text = (
        "defaults: &opt {lr: 0.001, weight_decay: 0.0005}\n"
        "optimizer:\n  <<: *opt\n  lr: 0.01\n"
        "betas: &b [0.9, 0.999]\nagain: *b\n"
    )
    data = load_yaml_text(text, "c.yaml")
    assert data["optimizer"] == {"lr": 0.01, "weight_decay": 0.0005} and data["again"] == [0.9, 0.999]


def test_train_refuses_an_alias_bomb_at_once(tmp_path):
    """The whole command, in a process with a memory cap: refused in seconds, not a hang that eats the machine."""
    import resource
    import subprocess
    import sys

    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    limit = 3 << 30

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "paramdoctor", "train", "--dry-run", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=cap_memory,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and "anchors and aliases" in proc.stderr and "Traceback" not in proc.stderr


def test_a_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match=r"c.yaml: line 1: .*recursive alias"):
        load_yaml_text("a: &x [1, *x]\n", "c.yaml")


def test_runaway_nesting_is_refused():
    deep = "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(ConfigError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        load_yaml_text(deep, "c.yaml")


def test_a_duplicate_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 0.1\n  weight_decay: 0.0\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 4: duplicate key 'lr' \(first at line 2\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'data'"):
        load_yaml_text("data: {}\nseed: 1\ndata: {}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"line 1: duplicate key 'a'"):
        load_yaml_text("x: [{a: 1, a: 2}]\n", "c.yaml")


def test_a_config_file_that_is_not_utf8_names_the_file_and_byte(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"optimizer:\n  lr: 0.1  # caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message == f"{path}: config file is not UTF-8 (byte 0xe9 at offset 27, line 2); save it as UTF-8"


def test_an_oversized_config_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"c.yaml: config file is larger than 1 MiB"):
        load_config(path)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_yaml_text("#" * (MAX_FILE_BYTES + 1), "text")


def test_read_text_file_raises_the_callers_error_class(tmp_path):
    from paramdoctor.errors import InputError

    path = tmp_path / "expect.yaml"
    path.write_bytes(b"fire: [\xff]\n")
    with pytest.raises(InputError, match=r"expect.yaml: expectation file is not UTF-8 \(byte 0xff at offset 7, line 1\)"):
        read_text_file(path, "expectation file", InputError)
    with pytest.raises(InputError, match="expectation file not found"):
        read_text_file(tmp_path / "none.yaml", "expectation file", InputError)


# --- text a YAML parser or int() cannot take -----------------------------------------------


def test_a_path_with_a_null_byte_is_one_config_error():
    with pytest.raises(ConfigError, match=r"x\x00y: cannot read config file \(the path holds a null byte\)"):
        read_config_file("x\x00y")


def test_a_number_too_long_for_int_names_its_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batch_size: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 2: data.batch_size: a number of 5000 digits"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^override trainer.gradient_clip_val: a number of 5000 digits"):
        load_config(None, ["trainer.gradient_clip_val=" + "9" * 5000])


@pytest.mark.parametrize("override", ["experiment.name=" + os.fsdecode(b"\xff"), "data.augment=\udc80"])
def test_an_override_holding_undecodable_bytes_names_the_override(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert message.startswith(f"override {key}: the value is not UTF-8")
    assert "\\x" in message and "\n" not in message


def test_a_value_echoed_in_an_error_is_shortened():
    """Aliases expand a short override into a long value; the error quotes 80 characters of it."""
    chain = "{k0: &a0 {k: lol}, k1: &a1 {j0: *a0, j1: *a0, j2: *a0}, k2: &a2 {j0: *a1, j1: *a1, j2: *a1}}"
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"optimizer.betas={chain}"])
    message = str(info.value)
    assert "optimizer.betas" in message and "got {'k0': {'k': 'lol'}" in message and "..." in message
    assert len(message) < 250
