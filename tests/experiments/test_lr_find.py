"""The range test on real digits: the sweep, its divergence stop, the recorded run, and --apply's YAML rewrite."""

from __future__ import annotations

import math
import os

import pytest
from mlflow import MlflowClient

from paramdoctor.config import load_config
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.experiments.lr_find import (
    KIND,
    TAG_KIND,
    TAG_STATUS,
    TAG_STOP_REASON,
    SweepSpec,
    apply_to_yaml,
    lr_find,
    sweep,
    yaml_number,
)
from paramdoctor.experiments.lr_pickers import first_divergence

TINY = ["data.subset=160", "data.batch_size=32"]


def test_the_spec_is_an_exponential_ramp_and_refuses_impossible_bounds():
    spec = SweepSpec(start=1e-6, end=1.0, steps=31)
    assert spec.lr_at(0) == pytest.approx(1e-6) and spec.lr_at(30) == pytest.approx(1.0)
    assert spec.lr_at(15) == pytest.approx(1e-3)  # geometric: the middle step is the middle decade
    for kwargs, text in (
        ({"start": 1.0, "end": 0.1}, "need 0 < start < end"),
        ({"start": 0.0}, "need 0 < start < end"),
        ({"start": 0.5, "end": 1.0}, "at least one decade"),
        ({"end": 1000.0}, "at most 100"),
        ({"steps": 5}, "--steps 5"),
        ({"start": math.nan}, "finite number"),
    ):
        with pytest.raises(InputError, match=text):
            SweepSpec(**kwargs)


def test_a_real_sweep_keeps_the_backbone_ratio_and_is_recorded_as_one_run_with_the_picture(migrated_store_uri, tmp_path):
    config = load_config(None, [*TINY, "optimizer.lr=0.01", "optimizer.backbone_lr=0.001"])  # ratio 0.1
    result = lr_find(config, SweepSpec(start=1e-5, end=1.0, steps=30), config_label="defaults", picture=tmp_path / "lr.png")

    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    sw = result.sweep
    assert sw.ratios == {"backbone": pytest.approx(0.1), "head": 1.0}
    assert len(sw.lrs) == len(sw.losses) == len(sw.smoothed) and 0 < len(sw.lrs) <= 30
    assert sw.lrs[0] == pytest.approx(1e-5)
    assert set(result.suggestions) == {"robust", "valley", "steepest", "minimum"}

    client = MlflowClient(migrated_store_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_KIND] == KIND
    assert run.data.tags[TAG_STOP_REASON] == sw.stop_reason
    assert run.data.tags[TAG_STATUS] == result.status
    assert run.data.params["lr_find.steps"] == "30" and run.data.params["optimizer.lr"] == "0.01"
    for name, s in result.suggestions.items():
        assert run.data.params[f"lr_find.suggestion.{name}"] == ("none" if s.lr is None else f"{s.lr:.6g}")
    head = client.get_metric_history(result.run_id, "lr_find/lr")
    backbone = {m.step: m.value for m in client.get_metric_history(result.run_id, "lr_find/lr/backbone")}
    loss = client.get_metric_history(result.run_id, "lr_find/loss")
    assert [m.step for m in sorted(head, key=lambda m: m.step)] == list(range(1, len(sw.lrs) + 1))
    assert len(loss) == len(sw.lrs)
    for m in head:  # the sweep multiplies both groups: their ratio holds at every step
        assert backbone[m.step] == pytest.approx(0.1 * m.value)
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "paramdoctor")}
    assert artifacts == {"paramdoctor/lr_find.png", "paramdoctor/lr_find.json"}
    assert not [k for k in run.data.metrics if k.startswith(("step/", "train/", "val/"))]  # never a training run


def test_a_sweep_into_huge_learning_rates_stops_on_divergence(tmp_path):
    config = load_config(None, [*TINY, "optimizer.name=sgd", "model.weights=null"])
    result = sweep(config, SweepSpec(start=1.0, end=100.0, steps=60))
    assert result.stop_reason in ("diverged", "nonfinite_loss")
    assert len(result.lrs) < 60
    if result.stop_reason == "diverged":
        # the last kept point is the first whose smoothed loss is above 4x the best so far
        assert first_divergence(result.smoothed, 4.0) == len(result.lrs) - 1
    else:
        assert result.nonfinite_at == len(result.lrs) + 1 and all(math.isfinite(v) for v in result.losses)


def test_bad_input_fails_before_any_run_exists(tracking_uri, tmp_path):
    config = load_config(None, [*TINY, "model.name=resnet_nope"])
    with pytest.raises(ConfigError, match="model.name=resnet_nope"):
        lr_find(config, SweepSpec(steps=20), picture=tmp_path / "x.png")
    with pytest.raises(InputError, match="--picker"):
        lr_find(load_config(None, TINY), SweepSpec(steps=20), picker="fastest", picture=tmp_path / "x.png")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "x.png").exists()


# --- --apply ------------------------------------------------------------------------------------------------

RECIPE = """\
# my recipe: keep this comment
seed: 3   # the seed
optimizer:
  name: adamw          # decoupled decay
  lr: 0.001            # head LR
  backbone_lr: 0.0005  # half the head's
  betas:
    - 0.9
    - 0.99

scheduler:
  name: cosine
"""


def test_apply_rewrites_only_the_two_values_and_keeps_the_ratio(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    config = load_config(path)
    changes = apply_to_yaml(path, 0.0043, 0.0043 * 0.5, config=config)
    text = path.read_text()
    assert text.splitlines()[0] == "# my recipe: keep this comment"
    assert "  lr: 0.0043            # head LR" in text and "  backbone_lr: 0.00215  # half the head's" in text
    assert text.replace("0.0043", "0.001").replace("0.00215", "0.0005") == RECIPE  # nothing else moved
    new = load_config(path)
    assert new.optimizer.lr == 0.0043 and new.optimizer.backbone_lr / new.optimizer.lr == pytest.approx(0.5)
    assert [(c.key, c.old, c.new, c.written) for c in changes] == [
        ("optimizer.lr", "0.001", "0.0043", True),
        ("optimizer.backbone_lr", "0.0005", "0.00215", True),
    ]
    assert sorted(os.listdir(tmp_path)) == ["recipe.yaml"]  # no temporary file left beside it


def test_apply_leaves_an_auto_backbone_lr_alone_and_adds_a_missing_lr(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  name: sgd\n  backbone_lr: null   # auto\ntrainer:\n  max_epochs: 3\n")
    config = load_config(path)
    changes = apply_to_yaml(path, 0.05, None, config=config)
    assert path.read_text() == "optimizer:\n  name: sgd\n  backbone_lr: null   # auto\n  lr: 0.05\ntrainer:\n  max_epochs: 3\n"
    assert changes[1].written is False and "now resolves to 0.05" in changes[1].new


def test_apply_refuses_a_layout_it_cannot_edit_safely_and_leaves_the_file(tmp_path):
    path = tmp_path / "alias.yaml"
    original = "optimizer:\n  lr: &lr 0.001\n  backbone_lr: *lr\n"
    path.write_text(original)
    with pytest.raises(ConfigError, match="by hand"):
        apply_to_yaml(path, 0.01, 0.01, config=load_config(path))
    assert path.read_text() == original


def test_numbers_are_written_so_every_yaml_reader_reads_a_float():
    import yaml

    for value in (0.0043, 4.3e-05, 1e-05, 0.1, 2.0):
        text = yaml_number(value)
        assert yaml.safe_load(f"x: {text}")["x"] == pytest.approx(value), text
