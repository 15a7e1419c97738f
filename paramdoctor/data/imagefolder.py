"""A folder of images, one sub-folder per class, read from disk through a DataLoader.

Unlike the in-memory datasets, images here are decoded one by one, so the
per-sample work runs in DataLoader workers (``data.num_workers``). Randomness
does not come from each worker's global RNG: the batch sampler hands every
sample its own seed, drawn from ``(seed, epoch)``, so crops and flips are the
same whatever the number of workers, and whether they persist or not.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets import ImageFolder

from paramdoctor.data.in_memory import epoch_generator
from paramdoctor.data.sharding import EpochShard
from paramdoctor.errors import InputError, ParamDoctorError, TrainingError

# the usual statistics for natural photographs (and what ImageNet-pretrained models expect)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def open_image_folder(root: str) -> ImageFolder:
    """torchvision's ImageFolder over ``root``, with its failures turned into one-line InputErrors."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InputError(f"data.root={root}: no such directory; point data.root at a folder with one sub-folder of images per class")
    try:
        return ImageFolder(str(path))
    except FileNotFoundError as exc:  # torchvision's text names the classes: file names, printed escaped
        raise InputError(
            f"data.root={_printable(root)}: {_printable(exc)}; put the images in one sub-folder per class (root/cat/1.png, root/dog/2.png)"
        ) from None


def read_image(folder: ImageFolder, path: str, error: type[ParamDoctorError] = InputError):
    """``folder.loader(path)`` (a PIL image in RGB), or one ``error`` line naming the file and what is wrong with it.

    PIL's failures differ by file (not an image, cut short, a header claiming
    billions of pixels); its decompression-bomb warning is an error here, so
    no warning reaches the terminal either.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return folder.loader(path)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise error(f"data.root: cannot read image {_printable(path)} ({_image_problem(exc)}); remove or replace the file") from None


def _image_problem(exc: BaseException) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image file PIL can read"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "its header claims more pixels than PIL decodes safely"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so a file name cannot break the error onto two lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def native_side(folder: ImageFolder) -> int:
    """The shorter side of the first image: the size kept when ``data.image_size`` is not set."""
    return min(read_image(folder, folder.samples[0][0]).size)


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(position, sample_seed)``: the order and every seed follow from ``(seed, epoch)``.

    ``shard`` is this process's share of each epoch in a torchrun job
    (:mod:`paramdoctor.data.sharding`); a plain process takes all of it.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        drop_lone_last: bool,
        shard: EpochShard | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_lone_last = drop_lone_last
        self.shard = shard if shard is not None else EpochShard(num_samples)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.shard.set_epoch(epoch)

    def __len__(self) -> int:
        full, rest = divmod(len(self.shard), self.batch_size)
        if rest == 0 or (rest == 1 and self.drop_lone_last and full > 0):
            return full
        return full + 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = epoch_generator(self.seed, self.epoch)
        n = self.num_samples
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=generator)
        if self.shard.num_replicas > 1:  # this rank's positions of the global order, each with its sample's seed
            mine = self.shard.positions()
            order, seeds = order[mine], seeds[mine]
        pairs = list(zip(order.tolist(), seeds.tolist()))
        for i in range(len(self)):
            yield pairs[i * self.batch_size : (i + 1) * self.batch_size]


class FolderSamples(Dataset):
    """Samples ``indices`` of an ImageFolder, decoded and transformed one at a time.

    Resize (shorter side) and centre crop to ``size``, to float in [0, 1], then when
    ``augment``: zero-pad by ``padding`` and crop back to ``size`` (torchvision's
    ``RandomCrop(size, padding)``), flip left-right with probability 0.5; finally normalise.
    """

    def __init__(
        self,
        folder: ImageFolder,
        indices: np.ndarray,
        *,
        size: int,
        augment: bool,
        padding: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.folder = folder
        self.indices = [int(i) for i in indices]
        self.size = size
        self.augment = augment
        self.padding = padding
        self.mean = list(mean)
        self.std = list(std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, int]:
        position, sample_seed = item
        path, target = self.folder.samples[self.indices[position]]
        # found while training: the run has started, so it ends FAILED with this reason (exit 1), not as bad input
        x = TF.to_image(read_image(self.folder, path, TrainingError))
        x = TF.center_crop(TF.resize(x, [self.size]), [self.size, self.size])
        x = TF.to_dtype(x, torch.float32, scale=True)
        if self.augment:
            rng = np.random.default_rng(sample_seed)
            top, left = (int(v) for v in rng.integers(0, 2 * self.padding + 1, size=2))
            x = TF.crop(TF.pad(x, [self.padding]), top, left, self.size, self.size)
            if rng.random() < 0.5:
                x = TF.horizontal_flip(x)
        return TF.normalize(x, self.mean, self.std), target


class FolderLoader:
    """A DataLoader over FolderSamples that yields ``(x, y)`` already on the device."""

    def __init__(
        self,
        samples: FolderSamples,
        *,
        batch_size: int,
        seed: int,
        shuffle: bool,
        num_workers: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.samples = samples
        self.device = device
        self.batch_size = batch_size
        shard = EpochShard(len(samples), num_replicas=world_size, rank=rank, pad=shuffle)
        self.batches = SeededBatchSampler(
            len(samples), batch_size, seed=seed, shuffle=shuffle, drop_lone_last=shuffle, shard=shard
        )
        self._loader = DataLoader(
            samples,
            batch_sampler=self.batches,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        try:
            for x, y in self._loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, dtype=torch.int64, non_blocking=True)
        except ParamDoctorError as exc:
            raise type(exc)(_worker_message(str(exc))) from None


def _worker_message(message: str) -> str:
    """The one-line message of an error a DataLoader worker raised: the worker wraps it in its traceback's text."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return message
    last = lines[-1]  # "paramdoctor.errors.TrainingError: data.root: cannot read image ..."
    return last.split(": ", 1)[1] if ": " in last else last
