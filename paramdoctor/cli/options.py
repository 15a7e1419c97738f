"""Parsing of option values that several commands share."""

from __future__ import annotations

from paramdoctor.errors import InputError


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``--map val/loss=eval_loss`` values -> ``{"val/loss": "eval_loss"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise InputError(f"--map {item!r}: expected KEY=COLUMN, e.g. --map val/loss=eval_loss")
        mapping[key.strip()] = column.strip()
    return mapping
