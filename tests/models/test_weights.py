"""First weights from checkpoints, MLflow runs and the torchvision hub cache."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import mlflow
import pytest
import torch
import torchvision

from paramdoctor.cli.app import main
from paramdoctor.config.schema import ModelConfig
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.models import build_model
from paramdoctor.models.registry import torchvision_model_names
from paramdoctor.models.weights import TorchvisionWeights


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
    with pytest.raises(InputError, match="junk.pt is not a PyTorch checkpoint"):
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


def _not_state_dicts(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files a user may hand over as weights by mistake, each with what the error must say it is."""
    state = build_model(ModelConfig(), num_classes=10, in_channels=1).model.state_dict()
    files: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, says: str) -> None:
        (tmp_path / name).write_bytes(data)
        files[name] = (tmp_path / name, says)

    def save(name: str, obj, says: str, **kwargs) -> None:
        torch.save(obj, tmp_path / name, **kwargs)
        files[name] = (tmp_path / name, says)

    put("notes.txt", b"epoch,loss\n1,2.5\nhello world\n", "is a text file")
    put("hello.pt", b"hello", "is a text file")
    put("random.bin", bytes(range(256))[::-1] * 16, "first bytes are not those of a torch.save file")
    put("empty.pt", b"", "the file is empty")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "not weights")
    files["other.zip"] = (tmp_path / "other.zip", "zip archive of 1 files without the data.pkl")
    save("full.pt", state, "")
    whole = (tmp_path / "full.pt").read_bytes()
    put("cut-zip.pt", whole[: len(whole) // 2], "truncated or damaged")
    save("legacy.pt", state, "", _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pt").read_bytes()
    put("cut-legacy.pt", legacy[: len(legacy) // 2], "truncated or damaged")
    put("cut-pickle.pt", legacy[:40], "truncated or damaged")
    save("list.pt", list(state.values()), f"holds a list of {len(state)} items")
    save("int.pt", 3, "holds an int")
    save("tensor.pt", torch.zeros(3), "holds a single tensor of shape (3,)")
    save("nested-list.pt", {"state_dict": [1, 2]}, "holds a dict with keys 'state_dict'")
    save("empty-dict.pt", {}, "holds an empty dict")
    del files["full.pt"], files["legacy.pt"]
    return files


def test_files_that_are_not_state_dicts_are_one_line_input_errors_naming_the_file(tmp_path):
    for name, (path, says) in _not_state_dicts(tmp_path).items():
        with pytest.raises(InputError) as info:
            build_model(ModelConfig(weights=str(path)), num_classes=10, in_channels=1)
        message = str(info.value)
        assert f"{path} is not a PyTorch checkpoint (expected a state dict saved with torch.save)" in message, name
        assert says in message and "torch.save(model.state_dict(), path)" in message, (name, message)
        assert "\n" not in message, name
    wrong = {k: torch.zeros(3) for k in build_model(ModelConfig(), num_classes=10, in_channels=1).model.state_dict()}
    torch.save(wrong, tmp_path / "shapes.pt")
    with pytest.raises(InputError, match=r"backbone tensors have other shapes, e.g. block1.0.weight \(3,\) vs \(32, 1, 3, 3\)"):
        build_model(ModelConfig(weights=str(tmp_path / "shapes.pt")), num_classes=10, in_channels=1)


def test_train_with_a_text_file_as_weights_is_exit_2_before_any_run(tracking_uri, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("these are my notes, not weights\n")
    assert main(["train", "model.weights=notes.txt", "data.subset=64", "trainer.max_epochs=1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: model.weights=notes.txt: notes.txt is not a PyTorch checkpoint (expected a state dict saved with torch.save): "
        "it is a text file; save the weights with torch.save(model.state_dict(), path)"
    )
    store = tmp_path / "mlflow.db"
    assert not store.exists() or not mlflow.MlflowClient(tracking_uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(tracking_uri).search_experiments()]
    )


def test_module_versions_in_a_checkpoint_survive_loading(tmp_path):
    # MNASNet's loader reads its version from the state dict's _metadata, which a plain dict copy drops
    source = build_model(ModelConfig(name="mnasnet0_5"), num_classes=10, in_channels=3)
    state = source.model.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")  # a dict comprehension: no _metadata
    torch.save(state, tmp_path / "m.pt")
    loaded = build_model(ModelConfig(name="mnasnet0_5", weights=str(tmp_path / "m.pt")), num_classes=10, in_channels=3)
    assert _same(loaded.model.state_dict(), state, state)


class _Planted:
    """A pickle whose loading creates ``marker``: what a planted weight file would do with full pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_planted_pickle_in_the_hub_cache_never_runs(tmp_path, monkeypatch, writer):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PARAMDOCTOR_ALLOW_DOWNLOAD", raising=False)
    cache = TorchvisionWeights(torchvision.models.ResNet18_Weights.IMAGENET1K_V1).cache_path
    assert cache.name == "resnet18-f37072fd.pth"
    cache.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    if writer == "torch.save":
        torch.save(_Planted(marker), cache)
    else:
        cache.write_bytes(pickle.dumps(_Planted(marker), protocol=2))
    with pytest.raises(InputError) as info:
        build_model(ModelConfig(name="resnet18", weights="DEFAULT"), num_classes=10, in_channels=3)
    assert not marker.exists()
    message = str(info.value)
    assert f"{cache} is not a PyTorch checkpoint" in message and "not loaded for safety" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


def _build_on_meta(name: str, kwargs: dict):
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None, **kwargs)
    except NotImplementedError:  # RegNet computes its widths with tensors: build it for real
        return torchvision.models.get_model(name, weights=None, **kwargs)


def test_every_torchvision_weight_gets_the_architecture_its_file_was_saved_from(tmp_path, monkeypatch):
    from paramdoctor.models.weights import pretrained_kwargs

    # torchvision's builders change the architecture for pretrained weights (ViT image size, class count, ...);
    # built without weights, the parameter count must match the weight's documented one
    for name in torchvision_model_names():
        for weights in torchvision.models.get_model_weights(name):
            expected = weights.meta["num_params"]
            if name.startswith("regnet") and expected > 12_000_000:
                continue  # built for real, not on the meta device: too large for a unit test
            kwargs = pretrained_kwargs(name, weights)
            if name == "inception_v3":
                kwargs["aux_logits"] = True  # its documented count includes the auxiliary head
            model = _build_on_meta(name, kwargs)
            assert sum(p.numel() for p in model.parameters()) == expected, (name, weights.name)

    # the cache files of families torchvision loads in its own way: old DenseNet keys, MNASNet versions
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name, rename in (("densenet121", True), ("mnasnet0_5", False)):
        weights = torchvision.models.get_model_weights(name).DEFAULT
        state = torchvision.models.get_model(name, weights=None).state_dict()
        saved = state
        if rename:  # DenseNet's files predate num_batches_tracked and name its layers norm.1, conv.2, ...
            saved = type(state)(
                (k.replace("norm1", "norm.1").replace("conv2", "conv.2"), v)
                for k, v in state.items()
                if not k.endswith("num_batches_tracked")
            )
            assert any(".norm.1." in k for k in saved)
        cache = TorchvisionWeights(weights).cache_path
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(saved, cache)
        bundle = build_model(ModelConfig(name=name, weights="DEFAULT"), num_classes=1000, in_channels=3)
        compared = [k for k in state if not k.endswith("num_batches_tracked")]
        assert _same(bundle.model.state_dict(), state, compared), name
        os.remove(cache)


def test_a_pickle_torch_refuses_is_one_line_without_a_warning(tracking_uri, tmp_path, capsys):
    """A pickled pathlib.Path (protocol 4): torch warns about the protocol on every load; nothing but the error line shows."""
    import warnings

    (tmp_path / "w.pt").write_bytes(pickle.dumps(Path("x"), protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["train", "model.weights=w.pt", "data.subset=64", "trainer.max_epochs=1", "-q"])
    assert code == 2
    assert [str(w.message)[:60] for w in caught] == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: model.weights=w.pt: w.pt is not a PyTorch checkpoint")
    assert "not loaded for safety (only tensors and plain containers are): Unsupported operand 149;" in err
    assert "are ()" not in err
