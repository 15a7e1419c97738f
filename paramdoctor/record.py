"""The tool-neutral run record: what every source produces and the engine reads.

A run record holds a run's configuration, its curves and its state. It knows
nothing of MLflow, Hugging Face or any other tool: sources (``paramdoctor.sources``)
turn those into records, and the decide stage only ever sees records.

Series keys follow :mod:`paramdoctor.keys`. An evaluation series is indexed by
epoch (``x_unit == "epoch"``) or, for runs evaluated every N steps, by step
(``x_unit == "step"``); evidence speaks in that unit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paramdoctor.errors import InputError
from paramdoctor.keys import RUN_STATES

EXPORT_FORMAT = "paramdoctor.run/v1"


@dataclass(frozen=True)
class Series:
    """One curve: x positions (epochs or steps) and values, both 1-D float arrays.

    Values may hold NaN or inf: those are evidence, never removed here.
    """

    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=float).reshape(-1)
        values = np.asarray(self.values, dtype=float).reshape(-1)
        if steps.shape != values.shape:
            raise ValueError(f"series steps and values differ in length: {steps.size} vs {values.size}")
        order = np.argsort(steps, kind="stable")
        object.__setattr__(self, "steps", steps[order])
        object.__setattr__(self, "values", values[order])

    @classmethod
    def from_pairs(cls, pairs: list[tuple[float, float]]) -> "Series":
        if not pairs:
            return cls(np.empty(0), np.empty(0))
        steps, values = zip(*pairs)
        return cls(np.asarray(steps, dtype=float), np.asarray(values, dtype=float))

    def __len__(self) -> int:
        return int(self.values.size)

    def to_dict(self) -> dict[str, list]:
        return {"steps": _json_floats(self.steps), "values": _json_floats(self.values)}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "series") -> "Series":
        """A curve from its export form ``{"steps": [...], "values": [...]}``; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f'{where}: expected {{"steps": [...], "values": [...]}}, got {_kind(data)}')
        columns = {}
        for name in ("steps", "values"):
            column = data.get(name)
            if not isinstance(column, list):
                raise ValueError(f'{where}: "{name}" must be a list of numbers, got {_kind(column)}')
            columns[name] = [_from_json_float(v, f'{where}: "{name}"[{i}]') for i, v in enumerate(column)]
        if len(columns["steps"]) != len(columns["values"]):
            raise ValueError(f'{where}: "steps" and "values" differ in length ({len(columns["steps"])} vs {len(columns["values"])})')
        return cls(np.asarray(columns["steps"], dtype=float), np.asarray(columns["values"], dtype=float))


@dataclass
class RunRecord:
    """A run as the doctor sees it.

    ``config`` is the nested configuration when known (paramdoctor's schema for
    runs it trained, the source tool's own arguments otherwise); ``params`` the
    flat key/value strings as stored. ``meta`` holds facts a rule may need that
    are not curves: ``num_classes``, ``max_epochs``, ``monitor`` and ``mode``,
    ``stop_reason``, ``steps_per_epoch``, ``train_samples``.
    """

    series: dict[str, Series]
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    run_name: str | None = None
    experiment: str | None = None
    status: str = "UNKNOWN"
    source: str = "paramdoctor"
    x_unit: str = "epoch"

    def __post_init__(self) -> None:
        if self.status not in RUN_STATES:
            raise ValueError(f"run status must be one of {RUN_STATES}, got {self.status!r}")
        if self.x_unit not in ("epoch", "step"):
            raise ValueError(f"x_unit must be 'epoch' or 'step', got {self.x_unit!r}")

    def get(self, key: str) -> Series | None:
        """The series under ``key``, or None when missing or empty."""
        s = self.series.get(key)
        return s if s is not None and len(s) else None

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return sorted(k for k, s in self.series.items() if k.startswith(prefix) and len(s))

    @property
    def is_running(self) -> bool:
        return self.status == "RUNNING"

    # --- the exported-run file format (``paramdoctor.run/v1``) ---------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment": self.experiment,
            "status": self.status,
            "source": self.source,
            "x_unit": self.x_unit,
            "config": self.config,
            "params": self.params,
            "tags": self.tags,
            "meta": self.meta,
            "series": {k: s.to_dict() for k, s in sorted(self.series.items())},
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "run record") -> "RunRecord":
        """A record from its export form; InputError naming the field that is wrong and what it should be."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InputError(f"{where}: not a paramdoctor run export (expected \"format\": \"{EXPORT_FORMAT}\")")
        try:
            series_data = _field(data, "series", dict, "a mapping of curve name to {\"steps\": [...], \"values\": [...]}")
            series = {str(k): Series.from_dict(v, where=f"series {str(k)!r}") for k, v in (series_data or {}).items()}
            mappings = {name: _field(data, name, dict, "a mapping") or {} for name in ("config", "params", "tags", "meta")}
            text = {name: _field(data, name, str, "a string or null") for name in ("run_id", "run_name", "experiment")}
            status = _field(data, "status", str, f"one of {', '.join(RUN_STATES)}") or "UNKNOWN"
            if status not in RUN_STATES:
                raise ValueError(f'"status" must be one of {", ".join(RUN_STATES)}, got {_short(status)}')
            x_unit = _field(data, "x_unit", str, "'epoch' or 'step'") or "epoch"
            if x_unit not in ("epoch", "step"):
                raise ValueError(f'"x_unit" must be \'epoch\' or \'step\', got {_short(x_unit)}')
            return cls(
                series=series,
                config=dict(mappings["config"]),
                params={str(k): str(v) for k, v in mappings["params"].items()},
                tags={str(k): str(v) for k, v in mappings["tags"].items()},
                meta=dict(mappings["meta"]),
                status=status,
                source=_field(data, "source", str, "a string") or "paramdoctor",
                x_unit=x_unit,
                **text,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"{where}: malformed run export: {exc}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RunRecord":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read run export ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: run export is not UTF-8 (byte at offset {exc.start}); save it as UTF-8") from None
        except (ValueError, RecursionError) as exc:
            if "integer string conversion" in str(exc):  # Python refuses ints of 4300+ digits
                raise InputError(f"{path}: not valid JSON (holds a number too long to be a metric)") from None
            reason = "nested too deeply" if isinstance(exc, RecursionError) else _short(str(exc), 160)
            raise InputError(f"{path}: not valid JSON ({reason})") from None
        return cls.from_dict(data, where=str(path))


def _json_floats(arr: np.ndarray) -> list:
    """Floats for strict JSON: NaN and infinities become strings."""
    out: list = []
    for v in arr.tolist():
        if v != v:
            out.append("nan")
        elif v in (float("inf"), float("-inf")):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(int(v) if float(v).is_integer() and abs(v) < 2**53 else v)
    return out


def _from_json_float(v: Any, where: str = "series value") -> float:
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} is {_short(v)}, not a number")
    try:
        return float(v)
    except OverflowError:  # an integer beyond float's range: as far off the scale as inf
        return float("inf") if v > 0 else float("-inf")


def _field(data: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    """``data[name]`` when it is ``kind`` or null; ValueError saying what was expected otherwise."""
    value = data.get(name)
    if value is None or isinstance(value, kind):
        return value
    raise ValueError(f'"{name}" must be {expected}, got {_kind(value)}')


def _kind(value: Any) -> str:
    """What a JSON value is, the way the file says it: ``a number (3)``, ``a list``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"a number ({_short(value)})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
