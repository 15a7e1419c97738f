"""Architectures, heads, channel adapters and the groups the trainer relies on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramdoctor.config.schema import ModelConfig
from paramdoctor.errors import ConfigError
from paramdoctor.keys import safe_key
from paramdoctor.models import DropoutLinear, ModelBundle, build_model


def _assert_every_param_once(bundle: ModelBundle) -> None:
    trainable = {id(p) for p in bundle.model.parameters() if p.requires_grad}
    grouped = [id(p) for params in bundle.param_groups.values() for p in params]
    assert sorted(grouped) == sorted(trainable) and len(grouped) == len(set(grouped))
    in_layers = [id(p) for params in bundle.layer_groups.values() for _, p in params]
    assert sorted(in_layers) == sorted(trainable)
    assert {id(p) for p in bundle.param_groups["head"]} == {id(p) for _, p in bundle.layer_groups["head"]}
    assert all(safe_key(name) == name for name in bundle.layer_groups)


def test_small_cnn_fits_digits_and_cifar_shapes():
    bundle = build_model(ModelConfig(dropout=0.25), num_classes=10, in_channels=1, image_size=8)
    assert list(bundle.layer_groups) == ["block1", "block2", "block3", "head"]
    assert bundle.head_names == ["head.weight", "head.bias"] and bundle.weights_report is None
    assert bundle.model(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    assert sum(p.numel() for p in bundle.model.parameters()) < 200_000
    _assert_every_param_once(bundle)
    rgb = build_model(ModelConfig(), num_classes=100, in_channels=3, image_size=32)
    assert rgb.model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_resnet18_gets_a_new_head_and_the_usual_groups():
    bundle = build_model(ModelConfig(name="resnet18", dropout=0.3), num_classes=5, in_channels=3)
    fc = bundle.model.fc
    assert isinstance(fc, DropoutLinear) and fc.out_features == 5 and fc.dropout == 0.3
    assert list(bundle.layer_groups) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert bundle.head_names == ["fc.weight", "fc.bias"]
    assert "fc.weight" in bundle.model.state_dict()  # dropout adds no submodule: checkpoint keys unchanged
    bundle.model.eval()
    assert bundle.model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    _assert_every_param_once(bundle)


def test_classifier_sequential_heads_are_replaced_at_their_last_linear():
    bundle = build_model(ModelConfig(name="mobilenet_v3_small"), num_classes=4, in_channels=3)
    assert bundle.head_names == ["classifier.3.weight", "classifier.3.bias"]
    assert bundle.model.classifier[3].out_features == 4
    assert list(bundle.layer_groups)[0] == "features.0" and list(bundle.layer_groups)[-1] == "head"
    _assert_every_param_once(bundle)


def test_grey_inputs_are_repeated_to_three_channels_without_renaming_parameters():
    grey = build_model(ModelConfig(name="resnet18"), num_classes=10, in_channels=1)
    rgb = build_model(ModelConfig(name="resnet18"), num_classes=10, in_channels=3)
    assert list(grey.model.state_dict()) == list(rgb.model.state_dict())
    grey.model.load_state_dict(rgb.model.state_dict())
    grey.model.eval(), rgb.model.eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(grey.model(x), rgb.model(x.expand(-1, 3, -1, -1)), atol=1e-5)


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ConfigError, match=r"model.name=resnet81: unknown model; did you mean .*resnet18"):
        build_model(ModelConfig(name="resnet81"), num_classes=10, in_channels=3)


def test_auxiliary_heads_are_dropped_so_training_mode_returns_logits():
    bundle = build_model(ModelConfig(name="googlenet"), num_classes=3, in_channels=3)
    bundle.model.train()
    out = bundle.model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    assert not any(isinstance(m, nn.Module) and name.startswith("aux") for name, m in bundle.model.named_children())
