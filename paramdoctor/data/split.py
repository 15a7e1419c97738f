"""Deterministic train/validation split and training subset.

Stratified where the class counts allow it, so that a small validation set or a
small ``subset`` still holds every class in its usual proportion. Both depend
only on the labels and the seed: the same seed gives the same split on every
machine.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from paramdoctor.errors import ConfigError


def _pick(indices: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into ``size`` chosen and the rest, stratified when every class has two members."""
    counts = np.bincount(labels[indices])
    present = counts[counts > 0]
    stratify = labels[indices] if present.size and present.min() >= 2 else None
    try:
        chosen, rest = train_test_split(indices, train_size=size, random_state=seed % 2**32, stratify=stratify)
    except ValueError:  # too few samples per class for this size: fall back to a plain random split
        chosen, rest = train_test_split(indices, train_size=size, random_state=seed % 2**32, stratify=None)
    return np.sort(chosen), np.sort(rest)


def split_indices(
    labels: np.ndarray, *, val_fraction: float, seed: int, subset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation samples, each sorted.

    ``val_fraction`` of all samples is held out first; ``subset`` then limits the
    training part. Raises ConfigError when the data is too small for the request.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise ConfigError(
            f"data.val_fraction={val_fraction} leaves no {'validation' if n_val < 1 else 'training'} samples "
            f"out of {n}; choose a fraction that keeps at least one sample on each side"
        )
    train, val = _pick(np.arange(n), labels, n - n_val, seed)
    if subset is not None:
        if subset > len(train):
            raise ConfigError(
                f"data.subset={subset} exceeds the {len(train)} training samples left after holding out "
                f"data.val_fraction={val_fraction} of {n}; lower data.subset (or data.val_fraction)"
            )
        if subset < len(train):
            train, _ = _pick(train, labels, subset, seed)
    return train, val
