"""What a config's "auto" values mean: the one place that resolves them.

``optimizer.backbone_lr: null`` is "auto". A backbone that starts from
pretrained weights (``model.weights`` set: a torchvision weight name, a local
checkpoint or ``runs:/...``) is fine-tuned at a tenth of the head's LR, the
discriminative-LR recipe; a backbone trained from scratch has nothing to
preserve and gets the head's LR (a tenth of it only slows training down). An
explicit value is always used as given.

The trainer builds its optimizer groups from :func:`effective_backbone_lr`,
and anything that reasons about a config (a prescription, a report) calls the
same function to know what a null ``backbone_lr`` meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paramdoctor.config.schema import TrainConfig
from paramdoctor.errors import ConfigError

#: auto backbone LR = ``optimizer.lr / FINETUNE_BACKBONE_LR_DIVISOR`` when the backbone starts pretrained
FINETUNE_BACKBONE_LR_DIVISOR = 10.0

_NULLS = ("", "null", "none", "~")


def effective_backbone_lr(config: TrainConfig | Mapping[str, Any]) -> float:
    """The peak learning rate the backbone group trains with under ``config``.

    An explicit ``optimizer.backbone_lr`` wins. ``null`` (the default) means
    ``optimizer.lr / 10`` when ``model.weights`` is set (fine-tuning pretrained
    weights) and ``optimizer.lr`` when the network is trained from scratch.

    ``config`` is a :class:`TrainConfig`, a nested mapping (``{"optimizer":
    {...}, "model": {...}}``, e.g. a run record's config) or a flat dotted one
    (``{"optimizer.lr": ...}``, e.g. MLflow params, whose values are strings and
    whose None is ``"null"``). Keys it lacks take the schema's defaults.

    >>> effective_backbone_lr({"optimizer.lr": 1e-3})
    0.001
    >>> effective_backbone_lr({"optimizer": {"lr": 1e-3}, "model": {"weights": "IMAGENET1K_V1"}})
    0.0001
    >>> effective_backbone_lr({"optimizer.lr": "0.001", "optimizer.backbone_lr": "0.0005", "model.weights": "null"})
    0.0005
    """
    if isinstance(config, TrainConfig):
        lr, backbone_lr, weights = config.optimizer.lr, config.optimizer.backbone_lr, config.model.weights
    elif isinstance(config, Mapping):
        defaults = TrainConfig()
        lr = _number(_get(config, "optimizer.lr"), "optimizer.lr", default=defaults.optimizer.lr)
        backbone_lr = _number(_get(config, "optimizer.backbone_lr"), "optimizer.backbone_lr", default=defaults.optimizer.backbone_lr)
        weights = _text(_get(config, "model.weights"))
    else:
        raise TypeError(f"effective_backbone_lr needs a TrainConfig or a mapping, got {type(config).__name__}")
    if backbone_lr is not None:
        return float(backbone_lr)
    if lr is None:
        raise ConfigError("optimizer.lr: expected a number, got null")
    return float(lr) / FINETUNE_BACKBONE_LR_DIVISOR if weights else float(lr)


def backbone_lr_note(config: TrainConfig) -> str:
    """One phrase saying what ``optimizer.backbone_lr`` resolves to and why, e.g. ``auto: 0.001 (= optimizer.lr: trained from scratch)``."""
    value = effective_backbone_lr(config)
    if config.optimizer.backbone_lr is not None:
        return f"{value:g} (explicit)"
    if config.model.weights:
        return f"auto: {value:g} (= optimizer.lr / {FINETUNE_BACKBONE_LR_DIVISOR:g}: pretrained weights from model.weights)"
    return f"auto: {value:g} (= optimizer.lr: trained from scratch, model.weights is null)"


# --- helpers ------------------------------------------------------------------

_MISSING = object()


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """``config[dotted]`` from a flat mapping, else walked through a nested one; ``_MISSING`` when absent."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NULLS)


def _number(value: Any, key: str, *, default: float | None) -> float | None:
    if value is _MISSING:
        return default
    if _is_null(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number or null, got {value!r}") from None


def _text(value: Any) -> str | None:
    if value is _MISSING or _is_null(value):
        return None
    return str(value)
