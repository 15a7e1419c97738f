"""Tiny datasets in the real on-disk formats, written into tmp_path.

The official CIFAR pickles were written by Python 2, so torchvision (loading them
with ``encoding="latin1"``) sees ``str`` keys: ``"data"``, ``"labels"``. Python 3
pickles of ``str`` keys read back identically.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_cifar10(root: Path, per_batch: int = 4) -> np.ndarray:
    """``cifar-10-batches-py`` with five train batches and a test batch; returns the train images (N x 32 x 32 x 3)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = []
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data}, f)
        if name != "test_batch":
            images.append(data)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)], "num_vis": 3072}, f)
    return np.vstack(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar100(root: Path, n: int = 30) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"fine_labels": [j % 100 for j in range(n)], "coarse_labels": [0] * n, "data": data}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{k}" for k in range(100)], "coarse_label_names": ["x"]}, f)


@pytest.fixture
def cifar10_root(tmp_path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "data"
    return root, write_cifar10(root)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two classes of six 10x12 PNGs each."""
    root = tmp_path / "images"
    rng = np.random.default_rng(2)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root
