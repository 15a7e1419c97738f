"""Augmentation of a whole batch at once, on whatever device the batch lives on.

In-memory datasets are small images already sitting on the training device, so
per-sample PIL transforms would be the bottleneck. These functions give the same
result as torchvision's ``RandomCrop(size, padding=p)`` (zero fill) and
``RandomHorizontalFlip(0.5)`` applied sample by sample, but as a few tensor ops
over the batch. The random draws are separate from the application so that a
loader can draw a whole epoch's parameters from one seeded CPU generator (same
seed, same augmentation, whatever the device).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_crop_offsets(n: int, padding: int, generator: torch.Generator) -> Tensor:
    """Top-left corners ``(row, col)`` of ``n`` crops, each uniform in ``[0, 2 * padding]``.

    The same range as torchvision's RandomCrop: an ``H x W`` window inside the
    image padded to ``(H + 2p) x (W + 2p)``.
    """
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, dtype=torch.int64)


def sample_flips(n: int, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Which of ``n`` samples to flip horizontally, each with probability ``p``."""
    return torch.rand(n, generator=generator) < p


def crop_with_padding(x: Tensor, offsets: Tensor, padding: int) -> Tensor:
    """Zero-pad every image by ``padding`` and cut an ``H x W`` window at its own offset.

    ``x`` is ``N x C x H x W``; ``offsets`` is ``N x 2`` (row, col), on any device.
    """
    if padding == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    offsets = offsets.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # N x H
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # N x W
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice: the result is N x H x W x C
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def flip_where(x: Tensor, flips: Tensor) -> Tensor:
    """Mirror the images whose ``flips`` entry is true (left-right)."""
    mask = flips.to(x.device)[:, None, None, None]
    return torch.where(mask, x.flip(-1), x)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x - mean) / std`` per channel; ``mean`` and ``std`` have one value per channel."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def augment_batch(
    x: Tensor, *, padding: int, flip: bool, generator: torch.Generator
) -> Tensor:
    """Random crop with zero padding, then (when ``flip``) a random horizontal flip."""
    n = x.shape[0]
    out = crop_with_padding(x, sample_crop_offsets(n, padding, generator), padding)
    if flip:
        out = flip_where(out, sample_flips(n, generator))
    return out
