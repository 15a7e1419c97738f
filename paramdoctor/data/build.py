"""``build_loaders``: from ``cfg.data`` to a training and a validation loader on the device.

The trainer sees one small interface (``BatchLoader``) whatever the source:
digits and CIFAR come through the in-memory fast path, an image folder through
a DataLoader. The split, the order of batches and every random crop and flip
follow from the seed and the epoch alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from paramdoctor.config.schema import DataConfig
from paramdoctor.data.cifar import load_cifar_arrays
from paramdoctor.data.digits import load_digits_arrays
from paramdoctor.data.imagefolder import FolderLoader, FolderSamples, native_side, open_image_folder
from paramdoctor.data.in_memory import ImageArrays, build_in_memory_pair
from paramdoctor.data.lineage import SplitRecord, choose_split, fingerprint_arrays, fingerprint_files
from paramdoctor.data.sharding import local_batch_size
from paramdoctor.errors import ConfigError


@runtime_checkable
class BatchLoader(Protocol):
    """What the trainer iterates: ``(x, y)`` on the device, float32 NCHW and int64."""

    batch_size: int

    @property
    def num_samples(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...


@dataclass
class Loaders:
    """Both loaders and what a model needs to know about the data."""

    train: BatchLoader
    val: BatchLoader
    num_classes: int
    in_channels: int
    image_size: int
    dataset_name: str
    class_names: list[str] = field(default_factory=list)
    split: SplitRecord | None = None  # how the samples were divided (recorded in the run and its checkpoints)


def _choose_image_size(requested: int | None, native: int, model_name: str | None) -> int:
    """``data.image_size`` if set, else the native size, raised to what the model accepts at least."""
    from paramdoctor.models import min_input_size

    minimum = min_input_size(model_name) if model_name else 1
    if requested is None:
        return max(native, minimum)
    if requested < minimum:
        raise ConfigError(
            f"data.image_size={requested} is below the {minimum}x{minimum} that model {model_name} accepts; "
            f"set data.image_size to at least {minimum} (or leave it unset)"
        )
    return requested


def _split(cfg: DataConfig, labels, fingerprint: str, seed: int, parent: SplitRecord | None, parent_where: str):
    return choose_split(
        labels,
        dataset=cfg.dataset,
        fingerprint=fingerprint,
        seed=seed,
        split_seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        subset=cfg.subset,
        parent=parent,
        parent_where=parent_where,
    )


def build_loaders(
    cfg: DataConfig,
    *,
    seed: int,
    device: torch.device,
    model_name: str | None = None,
    parent_split: SplitRecord | None = None,
    parent_where: str = "model.weights",
    rank: int = 0,
    world_size: int = 1,
) -> Loaders:
    """Split, store and batch the dataset ``cfg`` names, for training on ``device``.

    ``model_name`` lets the images be resized to the smallest input the model
    accepts (a ViT needs 224x224) when ``cfg.image_size`` is not set.
    ``parent_split`` is the split of the run whose weights this run starts
    from: on the same data it is reused, or a leaking split is refused
    (``paramdoctor.data.lineage``).

    In a torchrun job (``world_size`` processes) every process splits the
    data the same way and its loaders yield rank ``rank``'s share of each
    epoch, ``cfg.batch_size / world_size`` samples a step
    (:mod:`paramdoctor.data.sharding`); ``cfg.batch_size`` stays the job's batch.
    """
    batch_size = local_batch_size(cfg.batch_size, world_size)
    if cfg.dataset == "imagefolder":
        return _folder_loaders(
            cfg,
            seed=seed,
            device=device,
            model_name=model_name,
            parent_split=parent_split,
            parent_where=parent_where,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
        )
    arrays: ImageArrays = (
        load_digits_arrays() if cfg.dataset == "digits" else load_cifar_arrays(cfg.dataset, cfg.root, cfg.download)
    )
    fingerprint = fingerprint_arrays(arrays.images, arrays.labels)
    train_index, val_index, record = _split(cfg, arrays.labels, fingerprint, seed, parent_split, parent_where)
    image_size = _choose_image_size(cfg.image_size, arrays.images.shape[-1], model_name)
    train, val = build_in_memory_pair(
        arrays,
        train_index,
        val_index,
        device=device,
        batch_size=batch_size,
        seed=seed,
        augment_train=cfg.augment,
        image_size=image_size,
        rank=rank,
        world_size=world_size,
    )
    return Loaders(
        train=train,
        val=val,
        num_classes=len(arrays.class_names),
        in_channels=arrays.images.shape[1],
        image_size=image_size,
        dataset_name=cfg.dataset,
        class_names=arrays.class_names,
        split=record,
    )


def _folder_loaders(
    cfg: DataConfig,
    *,
    seed: int,
    device: torch.device,
    model_name: str | None,
    parent_split: SplitRecord | None,
    parent_where: str,
    batch_size: int,
    rank: int,
    world_size: int,
) -> Loaders:
    if not cfg.root:
        raise ConfigError("data.root is required for dataset imagefolder; set data.root=/path/to/folder")
    folder = open_image_folder(cfg.root)
    fingerprint = fingerprint_files(folder.root, folder.samples)
    train_index, val_index, record = _split(cfg, folder.targets, fingerprint, seed, parent_split, parent_where)
    size = _choose_image_size(cfg.image_size, native_side(folder), model_name)
    padding = max(1, round(size / 8))  # CIFAR's 4 pixels at 32, kept in proportion
    loaders = [
        FolderLoader(
            FolderSamples(folder, index, size=size, augment=cfg.augment and is_train, padding=padding),
            batch_size=batch_size,
            seed=seed,
            shuffle=is_train,
            num_workers=cfg.num_workers,
            device=device,
            rank=rank,
            world_size=world_size,
        )
        for index, is_train in ((train_index, True), (val_index, False))
    ]
    return Loaders(
        train=loaders[0],
        val=loaders[1],
        num_classes=len(folder.classes),
        in_channels=3,
        image_size=size,
        dataset_name="imagefolder",
        class_names=list(folder.classes),
        split=record,
    )
