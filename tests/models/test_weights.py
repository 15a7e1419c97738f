"""First weights from checkpoints, MLflow runs and the torchvision hub cache."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
import torchvision

from paramdoctor.config.schema import ModelConfig
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.models import build_model


def _same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_local_checkpoint_loads_every_tensor(tmp_path):
    source = build_model(ModelConfig(), num_classes=10, in_channels=1)
    path = tmp_path / "best.pt"
    torch.save(source.model.state_dict(), path)
    loaded = build_model(ModelConfig(weights=str(path)), num_classes=10, in_channels=1)
    state = source.model.state_dict()
    assert _same(loaded.model.state_dict(), state, state)
    assert loaded.weights_report == {"loaded": list(state), "skipped": [], "missing": []}


@pytest.mark.parametrize("wrap", [lambda s: {"state_dict": s}, lambda s: {"model": s, "epoch": 3}, lambda s: {f"module.{k}": v for k, v in s.items()}])
def test_wrapped_checkpoints_are_unwrapped(tmp_path, wrap):
    source = build_model(ModelConfig(), num_classes=10, in_channels=1)
    torch.save(wrap(source.model.state_dict()), tmp_path / "c.pth")
    loaded = build_model(ModelConfig(weights=str(tmp_path / "c.pth")), num_classes=10, in_channels=1)
    assert _same(loaded.model.state_dict(), source.model.state_dict(), source.model.state_dict())


def test_a_head_for_other_classes_is_skipped_and_reported(tmp_path):
    source = build_model(ModelConfig(), num_classes=10, in_channels=1)
    torch.save(source.model.state_dict(), tmp_path / "c.pt")
    loaded = build_model(ModelConfig(weights=str(tmp_path / "c.pt")), num_classes=4, in_channels=1)
    report = loaded.weights_report
    assert report["skipped"] == ["head.weight", "head.bias"] == report["missing"]
    backbone = [k for k in source.model.state_dict() if not k.startswith("head.")]
    assert _same(loaded.model.state_dict(), source.model.state_dict(), backbone)
    assert loaded.model.head.out_features == 4


def test_checkpoints_of_another_architecture_or_garbage_are_input_errors(tmp_path):
    torch.save(build_model(ModelConfig(name="resnet18"), num_classes=10, in_channels=3).model.state_dict(), tmp_path / "r.pt")
    with pytest.raises(InputError, match=r"keys this model does not have: .*conv1.weight"):
        build_model(ModelConfig(weights=str(tmp_path / "r.pt")), num_classes=10, in_channels=3)
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(InputError, match="cannot read"):
        build_model(ModelConfig(weights=str(tmp_path / "junk.pt")), num_classes=10, in_channels=3)
    with pytest.raises(InputError, match="no such checkpoint file"):
        build_model(ModelConfig(weights=str(tmp_path / "absent.pt")), num_classes=10, in_channels=3)


def test_weights_from_an_mlflow_run_artifact(tracking_uri, tmp_path):
    source = build_model(ModelConfig(), num_classes=10, in_channels=1)
    # the tracking_uri fixture exports MLFLOW_TRACKING_URI; no global state to restore
    with mlflow.start_run() as run:
        path = tmp_path / "best.pt"
        torch.save(source.model.state_dict(), path)
        mlflow.log_artifact(str(path), artifact_path="checkpoints")
    state = source.model.state_dict()
    for uri in (f"runs:/{run.info.run_id}/checkpoints/best.pt", f"runs:/{run.info.run_id}"):
        loaded = build_model(ModelConfig(weights=uri), num_classes=10, in_channels=1)
        assert _same(loaded.model.state_dict(), state, state)
    with pytest.raises(InputError, match="cannot fetch it from MLflow"):
        build_model(ModelConfig(weights="runs:/0123456789abcdef/checkpoints/best.pt"), num_classes=10, in_channels=1)


def test_torchvision_weight_names_read_the_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PARAMDOCTOR_ALLOW_DOWNLOAD", raising=False)
    expected = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(InputError) as info:
        build_model(ModelConfig(name="resnet18", weights="DEFAULT"), num_classes=10, in_channels=3)
    assert str(expected) in str(info.value) and "offline" in str(info.value)

    fake = torchvision.models.resnet18(weights=None)  # right format and shapes, random values
    expected.parent.mkdir(parents=True)
    torch.save(fake.state_dict(), expected)
    bundle = build_model(ModelConfig(name="resnet18", weights="IMAGENET1K_V1"), num_classes=10, in_channels=3)
    backbone = [k for k in fake.state_dict() if not k.startswith("fc.")]
    assert _same(bundle.model.state_dict(), fake.state_dict(), backbone)
    assert bundle.weights_report["skipped"] == ["fc.weight", "fc.bias"]
    same_classes = build_model(ModelConfig(name="resnet18", weights="ResNet18_Weights.DEFAULT"), num_classes=1000, in_channels=3)
    assert _same(same_classes.model.state_dict(), fake.state_dict(), fake.state_dict())
    assert same_classes.weights_report["skipped"] == []


def test_weight_names_that_cannot_exist_are_config_errors():
    with pytest.raises(ConfigError, match="choose DEFAULT or one of IMAGENET1K_V1"):
        build_model(ModelConfig(name="resnet18", weights="IMAGENET9K"), num_classes=10, in_channels=3)
    with pytest.raises(ConfigError, match="small_cnn has no torchvision weights"):
        build_model(ModelConfig(weights="DEFAULT"), num_classes=10, in_channels=1)
