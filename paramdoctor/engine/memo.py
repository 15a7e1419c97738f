"""What one diagnosis derives from a run record, computed once: measurements, smoothed curves, run facts.

Twenty-odd rules read the same few curves of a run. Each used to smooth
them, rank them and infer the run's chance level again for itself; a
:class:`RecordMemo` holds what was derived from one record so that the next
rule asking gets it back:

- a signal's whole measurement, per (signal, input series, the values of the
  rule parameters that signal reads: ``SignalSpec.reads``), so two rules on
  one signal with the same settings measure once;
- smoothed curves, keyed by their content (the same points smoothed by
  different signals are smoothed once);
- facts about the run (monitored metric, chance level, logged learning
  rate, telemetry curves, accuracy as a fraction, ...), keyed by what they
  are of.

A memo belongs to one record and one diagnosis: :func:`paramdoctor.engine.evaluate`
makes one per record (per evaluation-set view) when none is given, and
refuses a memo made for another record. Nothing is global: a memo lives as
long as the diagnosis that made it. What it hands out is shared between rules
and must not be changed; arrays come back read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from paramdoctor.record import RunRecord

if TYPE_CHECKING:
    from paramdoctor.engine.measure import Measurement, SignalSpec, Unavailable

_MISSING = object()


class RecordMemo:
    """The derived quantities of one run record (see the module doc)."""

    __slots__ = ("_store", "hits", "misses", "record")

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._store: dict[Hashable, Any] = {}
        self.hits = 0
        self.misses = 0

    def belongs_to(self, record: RunRecord) -> RecordMemo:
        """This memo, after checking it was made for ``record`` (ValueError otherwise: it would hand out another run's numbers)."""
        if record is not self.record:
            raise ValueError(
                f"a RecordMemo belongs to one run record ({self.record.run_id or 'unnamed'}); "
                f"it was handed another ({record.run_id or 'unnamed'})"
            )
        return self

    def once(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for; the same object every time after."""
        value = self._store.get(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            value = compute()
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            self._store[key] = value
        else:
            self.hits += 1
        return value

    def measurement(
        self, spec: SignalSpec, params: Mapping[str, Any], series: str | None, compute: Callable[[], Any]
    ) -> Measurement | Unavailable:
        """The signal's measurement on this record, shared by every rule that asks with the same inputs.

        The key holds the value (and type) of each parameter the signal reads
        (``spec.reads``, whose defaults are the ones the signal falls back
        to); parameters only the rule's conditions compare are not part of a
        measurement.
        """
        settings = tuple((name, _typed(params.get(name, default))) for name, default in sorted(spec.reads.items()))
        return self.once(("measure", spec.name, series, settings), compute)

    def monitor(self) -> tuple[str, str]:
        """:func:`paramdoctor.engine.context.monitor_of` the record: (monitored metric, mode)."""
        from paramdoctor.engine import context

        return self.once(("monitor",), lambda: context.monitor_of(self.record))

    def smooth(self, values: np.ndarray) -> np.ndarray:
        """:func:`paramdoctor.signals.smooth` of ``values``, once per distinct curve (read-only)."""
        from paramdoctor.signals.noise import smooth

        v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return self.once(("smooth", v.size, v.tobytes()), lambda: smooth(v))

    def rolling_median(self, values: np.ndarray, half_width: int) -> np.ndarray:
        """:func:`paramdoctor.signals.rolling_median` of ``values``, once per distinct curve and width (read-only)."""
        from paramdoctor.signals.noise import rolling_median

        v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return self.once(("rolling_median", int(half_width), v.size, v.tobytes()), lambda: rolling_median(v, half_width))


def _typed(value: Any) -> tuple[str, Any]:
    """A parameter value as a key: ``True``, ``1`` and ``1.0`` are different settings."""
    return (type(value).__name__, value)
