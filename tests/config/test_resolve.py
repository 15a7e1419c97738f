"""``optimizer.backbone_lr: null`` is "auto": lr/10 on pretrained weights, lr from scratch; explicit values win."""

from __future__ import annotations

import pytest
import yaml

from paramdoctor.config import TrainConfig, dump_yaml, effective_backbone_lr, flatten, load_config, to_tree
from paramdoctor.errors import ConfigError


def test_the_default_config_trains_the_backbone_from_scratch_at_the_head_lr():
    cfg = load_config()
    assert cfg.optimizer.backbone_lr is None and cfg.model.weights is None
    assert effective_backbone_lr(cfg) == cfg.optimizer.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "DEFAULT", "ckpt/best.pt", "runs:/0123abcd/checkpoints/best.pt"])
def test_pretrained_weights_give_a_tenth_of_the_head_lr(weights):
    cfg = TrainConfig.model_validate({"optimizer": {"lr": 3e-3}, "model": {"weights": weights}})
    assert effective_backbone_lr(cfg) == pytest.approx(3e-4)


@pytest.mark.parametrize("weights", [None, "IMAGENET1K_V1"])
def test_an_explicit_backbone_lr_is_used_as_given(weights):
    cfg = TrainConfig.model_validate({"optimizer": {"lr": 1e-3, "backbone_lr": 5e-3}, "model": {"weights": weights}})
    assert effective_backbone_lr(cfg) == pytest.approx(5e-3)


def test_nested_and_flat_mappings_resolve_like_the_config():
    cfg = load_config(None, ["optimizer.lr=2e-3", "model.weights=runs:/abc/checkpoints/best.pt"])
    tree = to_tree(cfg)
    assert effective_backbone_lr(tree) == effective_backbone_lr(flatten(tree)) == effective_backbone_lr(cfg) == pytest.approx(2e-4)


def test_mlflow_params_are_strings_with_null_for_none():
    params = {"optimizer.lr": "0.001", "optimizer.backbone_lr": "null", "model.weights": "null"}
    assert effective_backbone_lr(params) == pytest.approx(1e-3)
    assert effective_backbone_lr({**params, "model.weights": "IMAGENET1K_V1"}) == pytest.approx(1e-4)
    assert effective_backbone_lr({**params, "optimizer.backbone_lr": "0.0001"}) == pytest.approx(1e-4)


def test_missing_keys_take_the_schema_defaults():
    assert effective_backbone_lr({}) == pytest.approx(1e-3)
    assert effective_backbone_lr({"model": {"weights": "DEFAULT"}}) == pytest.approx(1e-4)


def test_a_value_that_is_no_number_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"optimizer.backbone_lr: expected a number or null, got 'fast'"):
        effective_backbone_lr({"optimizer.backbone_lr": "fast"})


def test_the_field_description_says_what_null_means():
    from paramdoctor.config.schema import OptimizerConfig

    text = OptimizerConfig.model_fields["backbone_lr"].description
    assert "null (auto)" in text and "optimizer.lr / 10 when model.weights is set" in text and "from scratch" in text


def test_an_annotated_dump_names_the_resolved_value_and_still_loads(tmp_path):
    scratch = load_config()
    assert "backbone_lr: null  # auto: 0.001 (= optimizer.lr: trained from scratch" in dump_yaml(scratch, annotate=True)
    assert "#" not in dump_yaml(scratch)  # artifacts and next configs stay plain
    tuned = load_config(None, ["model.weights=IMAGENET1K_V1"])
    assert "backbone_lr: null  # auto: 0.0001 (= optimizer.lr / 10: pretrained" in dump_yaml(tuned, annotate=True)
    explicit = load_config(None, ["optimizer.backbone_lr=2e-4"])
    assert "backbone_lr: 0.0002\n" in dump_yaml(explicit, annotate=True)
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(tuned, annotate=True))
    assert load_config(path) == tuned and yaml.safe_load(path.read_text())["optimizer"]["backbone_lr"] is None
