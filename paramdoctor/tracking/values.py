"""Turning config values into MLflow params and tags that MLflow will accept.

MLflow caps param values at 6000 characters and tag values at 8000; longer
values are cut with a visible marker instead of failing the whole run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_PARAM_VALUE_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_VALUE_LENGTH = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
TRUNCATED_MARKER = "...[truncated]"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``TRUNCATED_MARKER`` when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED_MARKER)] + TRUNCATED_MARKER


def param_value(value: Any) -> str:
    """How a config value reads as an MLflow param: None is ``null``, lists are JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 1e-3}}`` -> ``{"optimizer.lr": "0.001"}``: dotted keys, string values."""
    from paramdoctor.config.loading import flatten

    return {k: param_value(v) for k, v in flatten(_plain(tree), prefix).items()}


def _plain(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Nested mappings as dicts, the shape :func:`paramdoctor.config.loading.flatten` walks."""
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return truncate(line, limit)
