"""The batched augmentation must mean exactly what torchvision's per-sample transforms mean."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from paramdoctor.data.augment import (
    augment_batch,
    crop_with_padding,
    flip_where,
    normalize,
    sample_crop_offsets,
    sample_flips,
)


def _batch(n: int = 12, c: int = 3, h: int = 6, w: int = 7) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


def test_crop_equals_torchvision_pad_then_crop_at_the_same_offset():
    x = _batch()
    offsets = sample_crop_offsets(len(x), 2, torch.Generator().manual_seed(1))
    out = crop_with_padding(x, offsets, 2)
    for i in range(len(x)):
        top, left = offsets[i].tolist()
        expected = TF.crop(TF.pad(x[i], [2]), top, left, x.shape[2], x.shape[3])
        assert torch.equal(out[i], expected)


def test_every_augmented_sample_is_some_crop_or_flipped_crop_of_the_zero_padded_original():
    x = _batch(n=16)
    p = 2
    out = augment_batch(x, padding=p, flip=True, generator=torch.Generator().manual_seed(3))
    h, w = x.shape[2:]
    for i in range(len(x)):
        padded = TF.pad(x[i], [p])  # zero fill, as RandomCrop(size, padding=p)
        candidates = [TF.crop(padded, t, l, h, w) for t in range(2 * p + 1) for l in range(2 * p + 1)]
        candidates += [TF.horizontal_flip(c) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_offsets_cover_the_whole_range_of_random_crop_and_nothing_beyond():
    offsets = sample_crop_offsets(4000, 4, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == 8
    assert set(offsets[:, 0].tolist()) == set(range(9)) == set(offsets[:, 1].tolist())


def test_flips_happen_about_half_the_time():
    flips = sample_flips(4000, torch.Generator().manual_seed(0))
    assert 0.45 < flips.float().mean().item() < 0.55


def test_flip_where_mirrors_only_the_chosen_samples():
    x = _batch(n=4)
    out = flip_where(x, torch.tensor([True, False, True, False]))
    assert torch.equal(out[0], TF.horizontal_flip(x[0])) and torch.equal(out[2], TF.horizontal_flip(x[2]))
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])


def test_no_padding_means_no_crop_and_same_generator_same_result():
    x = _batch()
    assert torch.equal(crop_with_padding(x, torch.zeros(len(x), 2, dtype=torch.int64), 0), x)
    a = augment_batch(x, padding=1, flip=True, generator=torch.Generator().manual_seed(5))
    b = augment_batch(x, padding=1, flip=True, generator=torch.Generator().manual_seed(5))
    c = augment_batch(x, padding=1, flip=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_matches_torchvision():
    x = _batch()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    out = normalize(x, torch.tensor(mean), torch.tensor(std))
    for i in range(len(x)):
        assert torch.allclose(out[i], TF.normalize(x[i], list(mean), list(std)))
