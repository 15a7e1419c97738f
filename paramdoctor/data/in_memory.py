"""The fast path: a whole split held as one tensor on the training device.

Digits and CIFAR fit in memory many times over, so there is no DataLoader, no
worker process and no per-sample PIL work: every epoch draws one seeded
permutation (and one set of crop offsets and flips) on the CPU, moves it to the
device once, and each batch is an index into the stored tensor followed by the
batched augmentation of ``paramdoctor.data.augment``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from paramdoctor.data import augment
from paramdoctor.data.sharding import EpochShard

#: Largest stored tensor (bytes) resized once at build time; above it, each batch is resized instead.
RESIZE_AT_BUILD_BUDGET = 1 << 30


@dataclass
class ImageArrays:
    """A labelled image set in memory, as a source (digits, CIFAR) loads it."""

    images: np.ndarray  # N x C x H x W, uint8 in 0..255 or float32 in [0, 1]
    labels: np.ndarray  # N, int64
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, of images scaled to [0, 1]
    std: tuple[float, ...]
    padding: int  # random-crop padding at the native size
    flip: bool  # whether a horizontal flip keeps the label (not for digits)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch, stream)``."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 0..1; float tensors pass through as float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of an ``N x C x H x W`` float batch to ``size x size`` (antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_stored(images: Tensor, size: int, chunk: int = 1024) -> Tensor:
    """Resize a stored image tensor once, keeping its dtype (uint8 is rounded back)."""
    if images.shape[-2:] == (size, size):
        return images
    parts = []
    for start in range(0, images.shape[0], chunk):
        part = resize(to_unit_float(images[start : start + chunk]), size)
        if images.dtype == torch.uint8:
            part = part.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        parts.append(part)
    return torch.cat(parts)


class InMemoryLoader:
    """Batches ``(x, y)`` on the device from tensors already there.

    ``x`` is float32 NCHW, normalised, augmented when ``padding``/``flip`` ask for it;
    ``y`` is int64. Iterating twice without ``set_epoch`` repeats the same order,
    as torch's DistributedSampler does.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        seed: int,
        shuffle: bool,
        padding: int = 0,
        flip: bool = False,
        resize_to: int | None = None,
        drop_lone_last: bool = False,
        shard: EpochShard | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.padding = padding
        self.flip = flip
        self.resize_to = resize_to
        # a last batch of one sample breaks BatchNorm in training mode, so training drops it
        self.drop_lone_last = drop_lone_last
        # this process's share of each epoch in a torchrun job (all of it in a plain process)
        self.shard = shard if shard is not None else EpochShard(int(labels.shape[0]))
        self.epoch = 0
        self._mean = torch.tensor(mean, dtype=torch.float32, device=images.device)
        self._std = torch.tensor(std, dtype=torch.float32, device=images.device)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch
        self.shard.set_epoch(epoch)

    def __len__(self) -> int:
        n, b = len(self.shard), self.batch_size
        full, rest = divmod(n, b)
        if rest == 0 or (rest == 1 and self.drop_lone_last and full > 0):
            return full
        return full + 1

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.num_samples
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        offsets = augment.sample_crop_offsets(n, self.padding, generator) if self.padding else None
        flips = augment.sample_flips(n, generator) if self.flip else None
        if self.shard.num_replicas > 1:  # this rank's positions of the global order, with their crops and flips
            mine = self.shard.positions()
            order = order[mine]
            offsets = offsets[mine] if offsets is not None else None
            flips = flips[mine] if flips is not None else None
        device = self.device
        order = order.to(device, non_blocking=True)
        offsets = offsets.to(device, non_blocking=True) if offsets is not None else None
        flips = flips.to(device, non_blocking=True) if flips is not None else None
        for i in range(len(self)):
            at = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = order[at]
            x = to_unit_float(self.images[index])
            if self.resize_to is not None:
                x = resize(x, self.resize_to)
            if offsets is not None:
                x = augment.crop_with_padding(x, offsets[at], self.padding)
            if flips is not None:
                x = augment.flip_where(x, flips[at])
            yield augment.normalize(x, self._mean, self._std), self.labels[index]


def build_in_memory_pair(
    arrays: ImageArrays,
    train_index: np.ndarray,
    val_index: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
    seed: int,
    augment_train: bool,
    image_size: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[InMemoryLoader, InMemoryLoader]:
    """Train and validation loaders over ``arrays``, stored on ``device`` at ``image_size``.

    In a torchrun job of ``world_size`` processes, ``batch_size`` is this
    process's share of the job's batch and each loader yields rank ``rank``'s
    share of every epoch (:mod:`paramdoctor.data.sharding`).
    """
    native = arrays.images.shape[-1]
    padding = arrays.padding if native == image_size else max(1, round(arrays.padding * image_size / native))
    loaders = []
    for index, is_train in ((train_index, True), (val_index, False)):
        images = torch.from_numpy(np.ascontiguousarray(arrays.images[index])).to(device)
        labels = torch.from_numpy(arrays.labels[index].astype(np.int64)).to(device)
        resize_to = None
        if image_size != native:
            resized_bytes = images.shape[0] * images.shape[1] * image_size * image_size * images.element_size()
            if resized_bytes <= RESIZE_AT_BUILD_BUDGET:
                images = resize_stored(images, image_size)
            else:
                resize_to = image_size  # too big to hold resized: resize each batch (before augmenting, as at build)
        loaders.append(
            InMemoryLoader(
                images,
                labels,
                batch_size=batch_size,
                mean=arrays.mean,
                std=arrays.std,
                seed=seed,
                shuffle=is_train,
                padding=padding if (is_train and augment_train) else 0,
                flip=arrays.flip and is_train and augment_train,
                resize_to=resize_to,
                drop_lone_last=is_train,
                shard=EpochShard(len(index), num_replicas=world_size, rank=rank, pad=is_train),
            )
        )
    return loaders[0], loaders[1]
