"""CIFAR through torchvision's own dataset classes, on tiny files in the real format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paramdoctor.config.schema import DataConfig
from paramdoctor.data import build_loaders, data_root
from paramdoctor.data.cifar import CIFAR_STATS, load_cifar_arrays
from paramdoctor.errors import InputError

from .conftest import write_cifar100

CPU = torch.device("cpu")


def test_cifar10_loads_through_torchvision_and_keeps_every_pixel(cifar10_root):
    root, images = cifar10_root
    loaders = build_loaders(
        DataConfig(dataset="cifar10", root=str(root), val_fraction=0.25, batch_size=8, augment=False), seed=0, device=CPU
    )
    assert (loaders.num_classes, loaders.in_channels, loaders.image_size) == (10, 3, 32)
    assert loaders.class_names[:2] == ["class0", "class1"]
    assert loaders.train.num_samples == 15 and loaders.val.num_samples == 5
    stored = loaders.train.images.permute(0, 2, 3, 1).numpy()  # back to HWC, as written
    written = {row.tobytes() for row in images}
    assert all(img.tobytes() in written for img in stored)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR_STATS["cifar10"])
    x, _ = next(iter(loaders.val))
    assert torch.allclose(x * std + mean, loaders.val.images[: len(x)].float() / 255, atol=1e-5)


def test_cifar10_training_batches_crop_with_padding_4_and_flip(cifar10_root):
    root, _ = cifar10_root
    loaders = build_loaders(DataConfig(dataset="cifar10", root=str(root), batch_size=4), seed=0, device=CPU)
    assert loaders.train.padding == 4 and loaders.train.flip is True
    assert loaders.val.padding == 0 and loaders.val.flip is False


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    arrays = load_cifar_arrays("cifar100", str(tmp_path), download=False)
    assert len(arrays.class_names) == 100 and arrays.images.shape == (30, 3, 32, 32)
    assert arrays.labels.tolist() == list(range(30))


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(InputError) as info:
        build_loaders(DataConfig(dataset="cifar10", root=str(tmp_path)), seed=0, device=CPU)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert "data.download=true" in message and "\n" not in message


def test_unreadable_files_are_an_input_error(cifar10_root):
    root, _ = cifar10_root
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="unreadable"):
        load_cifar_arrays("cifar10", str(root), download=False)


def test_data_root_prefers_config_then_environment_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PARAMDOCTOR_DATA", str(tmp_path / "env"))
    assert data_root("/explicit") == Path("/explicit")
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("PARAMDOCTOR_DATA")
    assert str(data_root(None)).endswith(".cache/paramdoctor/data") and "~" not in str(data_root(None))


def test_environment_root_is_used_when_data_root_is_unset(cifar10_root, monkeypatch):
    root, _ = cifar10_root
    monkeypatch.setenv("PARAMDOCTOR_DATA", str(root))
    arrays = load_cifar_arrays("cifar10", None, download=False)
    assert isinstance(arrays.images, np.ndarray) and arrays.images.dtype == np.uint8 and len(arrays.labels) == 20


def test_present_files_are_never_replaced_by_a_download(cifar10_root):
    root, _ = cifar10_root  # hand-made files: their md5 differs from the official archive
    arrays = load_cifar_arrays("cifar10", str(root), download=True)
    assert len(arrays.labels) == 20


def _rewrite(path: Path, **changes) -> None:
    import pickle

    with open(path, "rb") as f:
        content = pickle.load(f)
    content.update(changes)
    with open(path, "wb") as f:
        pickle.dump(content, f)


@pytest.mark.parametrize(
    ("file", "changes", "says"),
    [
        ("batches.meta", {"label_names": ["a", "b", "c"]}, "is not one of the 3 classes 0..2"),  # labels run to 9
        ("data_batch_2", {"labels": [0, -1, 2, 3]}, "label -1 is not one of the 10 classes 0..9"),
        ("data_batch_2", {"labels": [0, 1, 10, 3]}, "label 10 is not one of the 10 classes"),
        ("data_batch_2", {"labels": [0, 1, "cat", 3]}, "label 'cat' is not one of the 10 classes"),
        ("data_batch_2", {"labels": [0, 1]}, "18 labels for 20 images"),
        ("data_batch_2", {"data": np.full((4, 3072), 1000.0)}, "the pixels are float64 values, not bytes 0..255"),
    ],
)
def test_files_that_unpickle_but_disagree_are_refused_before_training(cifar10_root, file, changes, says):
    """Labels outside the class names, too few labels, pixels that are not bytes: one InputError, not a crash mid-run."""
    root, _ = cifar10_root
    _rewrite(root / "cifar-10-batches-py" / file, **changes)
    with pytest.raises(InputError) as info:
        build_loaders(DataConfig(dataset="cifar10", root=str(root), val_fraction=0.25), seed=0, device=CPU)
    message = str(info.value)
    assert says in message and str(root / "cifar-10-batches-py") in message and "\n" not in message
