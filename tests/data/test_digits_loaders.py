"""The in-memory fast path on scikit-learn's digits."""

from __future__ import annotations

import math

import pytest
import torch

from paramdoctor.config.schema import DataConfig
from paramdoctor.data import BatchLoader, build_loaders
from paramdoctor.data import in_memory
from paramdoctor.data.digits import DIGITS_MEAN, DIGITS_STD
from paramdoctor.errors import ConfigError

CPU = torch.device("cpu")


def _all(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_shapes_dtypes_and_metadata():
    loaders = build_loaders(DataConfig(batch_size=64), seed=0, device=CPU, model_name="small_cnn")
    assert (loaders.num_classes, loaders.in_channels, loaders.image_size, loaders.dataset_name) == (10, 1, 8, "digits")
    assert isinstance(loaders.train, BatchLoader) and isinstance(loaders.val, BatchLoader)
    assert loaders.train.num_samples + loaders.val.num_samples == 1797
    assert loaders.val.num_samples == round(1797 * 0.2)
    assert len(loaders.val) == math.ceil(loaders.val.num_samples / 64)
    x, y = next(iter(loaders.train))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and x.device == CPU
    assert y.shape == (64,) and y.dtype == torch.int64
    assert sum(len(y) for _, y in loaders.train) == loaders.train.num_samples


def test_same_seed_same_batches_and_another_epoch_another_order():
    cfg = DataConfig(batch_size=100)
    a = build_loaders(cfg, seed=3, device=CPU)
    b = build_loaders(cfg, seed=3, device=CPU)
    first_a, first_b = _all(a.train), _all(b.train)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(first_a, first_b))
    a.train.set_epoch(2)
    second = _all(a.train)
    assert not torch.equal(first_a[0][1], second[0][1])
    a.train.set_epoch(0)
    assert torch.equal(_all(a.train)[0][0], first_a[0][0])  # an epoch is a pure function of (seed, epoch)


def test_validation_is_fixed_unaugmented_and_normalised():
    loaders = build_loaders(DataConfig(batch_size=50), seed=0, device=CPU)
    first = _all(loaders.val)
    loaders.val.set_epoch(5)
    again = _all(loaders.val)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    raw = loaders.val.images[:50]  # stored in [0, 1]
    expected = (raw - DIGITS_MEAN[0]) / DIGITS_STD[0]
    assert torch.allclose(first[0][0], expected, atol=1e-6)


def test_training_batches_are_augmented_only_when_asked():
    plain = build_loaders(DataConfig(batch_size=2000, augment=False), seed=0, device=CPU)
    augmented = build_loaders(DataConfig(batch_size=2000, augment=True), seed=0, device=CPU)
    (xp, yp), (xa, ya) = next(iter(plain.train)), next(iter(augmented.train))
    assert torch.equal(yp, ya)  # same order: augmentation draws after the permutation
    assert not torch.equal(xp, xa)
    # the unaugmented batch is the stored images, normalised, in the drawn order
    assert torch.allclose(xp.sort(dim=0).values, ((plain.train.images - DIGITS_MEAN[0]) / DIGITS_STD[0]).sort(dim=0).values, atol=1e-6)
    assert augmented.train.padding == 1 and augmented.train.flip is False  # digits are not flip-invariant


def test_subset_limits_training_and_too_large_subset_is_an_error():
    loaders = build_loaders(DataConfig(subset=100), seed=0, device=CPU)
    assert loaders.train.num_samples == 100
    with pytest.raises(ConfigError, match="data.subset"):
        build_loaders(DataConfig(subset=1500), seed=0, device=CPU)


def test_a_lone_last_training_sample_is_dropped():
    loaders = build_loaders(DataConfig(subset=65, batch_size=64), seed=0, device=CPU)
    assert len(loaders.train) == 1 and [len(y) for _, y in loaders.train] == [64]


def test_image_size_resizes_once_and_per_batch_resizing_gives_the_same_images(monkeypatch):
    cfg = DataConfig(image_size=16, augment=False, batch_size=500)
    at_build = build_loaders(cfg, seed=0, device=CPU)
    assert at_build.image_size == 16 and at_build.val.images.shape[-1] == 16
    monkeypatch.setattr(in_memory, "RESIZE_AT_BUILD_BUDGET", 0)
    per_batch = build_loaders(cfg, seed=0, device=CPU)
    assert per_batch.val.images.shape[-1] == 8 and per_batch.val.resize_to == 16
    (xa, _), (xb, _) = next(iter(at_build.val)), next(iter(per_batch.val))
    assert xb.shape[-1] == 16 and torch.allclose(xa, xb, atol=1e-5)


def test_image_size_follows_the_models_minimum_input():
    loaders = build_loaders(DataConfig(subset=20, batch_size=8), seed=0, device=CPU, model_name="alexnet")
    assert loaders.image_size == 63 and next(iter(loaders.val))[0].shape[-1] == 63
    with pytest.raises(ConfigError, match="data.image_size=16 is below the 63x63"):
        build_loaders(DataConfig(image_size=16), seed=0, device=CPU, model_name="alexnet")
