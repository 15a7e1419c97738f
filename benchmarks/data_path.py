"""Samples per second of paramdoctor's in-memory input pipeline against the usual DataLoader.

Data: CIFAR-shaped images (N x 3 x 32 x 32, uint8, random; nothing is
downloaded) and int64 labels, held in memory. Both pipelines do the same work
per epoch: shuffle, random crop 32 with zero padding 4, random horizontal
flip, scale to [0, 1], normalise with the CIFAR-10 statistics, batch.

* ``paramdoctor``  ``paramdoctor.data.in_memory.InMemoryLoader`` over the
                   stored tensors: one seeded permutation per epoch, each batch
                   an index into the stored tensor plus batched augmentation.
* ``dataloader``   ``torch.utils.data.DataLoader`` over a map-style Dataset
                   whose ``__getitem__`` applies ``torchvision.transforms.v2``
                   per sample (RandomCrop(32, padding=4), RandomHorizontalFlip,
                   ToDtype(float32, scale=True), Normalize), the hand-written
                   recipe; tried with each ``--workers`` count (persistent
                   workers), the best one is the baseline.

Every batch is consumed (``x.sum()`` accumulated, read once per epoch) so lazy
work is counted. One untimed warm-up epoch each, then the median of
``--epochs`` timed epochs.

    .venv/bin/python benchmarks/data_path.py --samples 50000 --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from benchmarks._common import machine_line, median, reproduce_line, set_threads  # noqa: E402
from paramdoctor.data.cifar import CIFAR_STATS  # noqa: E402
from paramdoctor.data.in_memory import InMemoryLoader  # noqa: E402

TARGET_SPEEDUP = 1.5
MEAN, STD = CIFAR_STATS["cifar10"]


class TransformedImages(Dataset):
    """A map-style dataset over in-memory uint8 images, transforming one sample at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def per_sample_transform() -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), dtype=torch.int64, generator=generator)
    return images, labels


def time_epoch(batches, device: torch.device) -> tuple[float, int]:
    """Seconds to iterate and consume one epoch, and the samples it yielded."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    t0 = time.perf_counter()
    for x, y in batches:
        if x.device != device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        total += x.sum(dtype=torch.float64)
        seen += y.numel()
    float(total)  # waits for the device
    return time.perf_counter() - t0, seen


def bench_paramdoctor(images, labels, args, device) -> list[float]:
    loader = InMemoryLoader(
        images.to(device),
        labels.to(device),
        batch_size=args.batch_size,
        mean=MEAN,
        std=STD,
        seed=args.seed,
        shuffle=True,
        padding=4,
        flip=True,
    )
    rates = []
    for epoch in range(args.epochs + 1):  # epoch 0: warm-up
        loader.set_epoch(epoch)
        seconds, seen = time_epoch(loader, device)
        if epoch:
            rates.append(seen / seconds)
    return rates


def bench_dataloader(images, labels, args, device, workers: int) -> list[float]:
    loader = DataLoader(
        TransformedImages(images, labels, per_sample_transform()),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(args.seed),
    )
    rates = []
    for epoch in range(args.epochs + 1):
        seconds, seen = time_epoch(loader, device)
        if epoch:
            rates.append(seen / seconds)
    del loader  # shuts persistent workers down
    return rates


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=50_000, help="images held in memory (default 50000, CIFAR's train set)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default 128")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per pipeline, median reported (default 3)")
    parser.add_argument(
        "--workers", default="0,2", help="DataLoader num_workers values to try, comma-separated (default 0,2)"
    )
    parser.add_argument("--device", default="cpu", help="where batches must end up: cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads in the main process (default 1: steady on a shared CPU); 0 keeps torch's default",
    )
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers must be comma-separated integers, got {args.workers!r}")
    if not args.worker_counts or min(args.worker_counts) < 0:
        parser.error(f"--workers needs at least one count >= 0, got {args.workers!r}")
    if args.samples < args.batch_size or args.epochs < 1:
        parser.error("--samples must be >= --batch-size and --epochs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    set_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line(str(device)))
    images, labels = make_data(args.samples, args.seed)
    print(
        f"data: {args.samples} x 3 x 32 x 32 uint8 in memory ({images.numel() / 2**20:.0f} MiB), "
        f"batch {args.batch_size}, "
        f"crop 32 pad 4 + flip + normalise; median of {args.epochs} epochs after 1 warm-up"
    )

    pd_rates = bench_paramdoctor(images, labels, args, device)
    pd = median(pd_rates)
    print(f"  paramdoctor InMemoryLoader      {pd:10.0f} samples/s   epochs: {', '.join(f'{r:.0f}' for r in pd_rates)}")
    baseline: dict[int, float] = {}
    for workers in args.worker_counts:
        rates = bench_dataloader(images, labels, args, device, workers)
        baseline[workers] = median(rates)
        print(
            f"  DataLoader, num_workers={workers:<2}      {baseline[workers]:10.0f} samples/s   "
            f"epochs: {', '.join(f'{r:.0f}' for r in rates)}"
        )
    best_workers = max(baseline, key=baseline.get)
    ratio = pd / baseline[best_workers]
    verdict = "meets" if ratio >= TARGET_SPEEDUP else "MISSES"
    print(
        f"paramdoctor / best DataLoader (num_workers={best_workers}): x{ratio:.2f} "
        f"({verdict} the x{TARGET_SPEEDUP} target)"
    )
    argv_out = [
        f"--samples={args.samples}", f"--batch-size={args.batch_size}", f"--epochs={args.epochs}",
        f"--workers={','.join(map(str, args.worker_counts))}", f"--device={args.device}", f"--seed={args.seed}",
        f"--threads={args.threads}",
    ]
    print(reproduce_line("data_path.py", argv_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
