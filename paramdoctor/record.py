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
    def from_dict(cls, data: dict[str, Any]) -> "Series":
        return cls(
            np.asarray([_from_json_float(v) for v in data["steps"]], dtype=float),
            np.asarray([_from_json_float(v) for v in data["values"]], dtype=float),
        )


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
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InputError(f"{where}: not a paramdoctor run export (expected \"format\": \"{EXPORT_FORMAT}\")")
        try:
            series = {str(k): Series.from_dict(v) for k, v in (data.get("series") or {}).items()}
            return cls(
                series=series,
                config=dict(data.get("config") or {}),
                params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
                tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
                meta=dict(data.get("meta") or {}),
                run_id=data.get("run_id"),
                run_name=data.get("run_name"),
                experiment=data.get("experiment"),
                status=data.get("status", "UNKNOWN"),
                source=data.get("source", "paramdoctor"),
                x_unit=data.get("x_unit", "epoch"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed run export ({exc})") from None

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
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
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


def _from_json_float(v: Any) -> float:
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"series value {v!r} is not a number")
    return float(v)
