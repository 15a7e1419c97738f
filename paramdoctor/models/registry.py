"""Model names: the built-in ``small_cnn`` and every torchvision classification model."""

from __future__ import annotations

import difflib
from functools import cache

import torchvision
from torchvision.models import get_model_weights, list_models

SMALL_CNN = "small_cnn"


@cache
def torchvision_model_names() -> tuple[str, ...]:
    """Classification models only (``torchvision.models``, not detection or segmentation)."""
    return tuple(list_models(module=torchvision.models))


def known_model_names() -> tuple[str, ...]:
    return (SMALL_CNN, *torchvision_model_names())


def close_matches(name: str, limit: int = 5) -> list[str]:
    """Known names that look like ``name``: the suggestions in a ConfigError."""
    names = known_model_names()
    matches = difflib.get_close_matches(name.lower(), names, n=limit, cutoff=0.5)
    if not matches:
        matches = [n for n in names if name.lower() in n][:limit]
    return matches


def min_input_size(name: str) -> int:
    """Smallest image side the model accepts (torchvision's weight metadata ``min_size``; 1 when unknown)."""
    if name not in torchvision_model_names():
        return 1
    try:
        weights = get_model_weights(name)
    except (ValueError, KeyError):
        return 1
    sizes = [max(w.meta.get("min_size", (1, 1))) for w in weights]
    return max(sizes) if sizes else 1
