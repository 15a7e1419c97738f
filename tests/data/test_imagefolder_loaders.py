"""An ImageFolder tree of tiny PNGs through a real DataLoader."""

from __future__ import annotations

import pytest
import torch

from paramdoctor.config.schema import DataConfig
from paramdoctor.data import build_loaders
from paramdoctor.errors import InputError

CPU = torch.device("cpu")


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(dataset="imagefolder", root=str(root), val_fraction=0.25, batch_size=4, **kw)


def test_image_folder_batches_are_square_normalised_tensors(image_folder):
    loaders = build_loaders(_cfg(image_folder), seed=0, device=CPU)
    assert (loaders.num_classes, loaders.in_channels, loaders.image_size) == (2, 3, 10)
    assert loaders.class_names == ["cat", "dog"]
    assert loaders.train.num_samples == 9 and loaders.val.num_samples == 3
    assert len(loaders.train) == 2  # 4 + 4, the lone ninth sample dropped
    x, y = next(iter(loaders.train))
    assert x.shape == (4, 3, 10, 10) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_same_seed_same_batches_workers_or_not_and_epochs_differ(image_folder):
    a = build_loaders(_cfg(image_folder), seed=1, device=CPU)
    b = build_loaders(_cfg(image_folder, num_workers=1), seed=1, device=CPU)
    batches_a, batches_b = list(a.train), list(b.train)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(batches_a, batches_b))
    a.train.set_epoch(1)
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(batches_a, list(a.train)))


def test_validation_is_not_augmented_and_image_size_resizes(image_folder):
    loaders = build_loaders(_cfg(image_folder, image_size=16), seed=0, device=CPU)
    first, second = list(loaders.val), list(loaders.val)
    assert first[0][0].shape[-2:] == (16, 16)
    assert torch.equal(first[0][0], second[0][0])


def test_missing_or_empty_roots_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        build_loaders(_cfg(tmp_path / "nowhere"), seed=0, device=CPU)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="one sub-folder per class"):
        build_loaders(_cfg(tmp_path / "empty"), seed=0, device=CPU)
