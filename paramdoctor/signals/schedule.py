"""Signals on a logged learning-rate curve: a warmup that never ended, a schedule that ran out of room.

A plateau means different things depending on where the learning rate is.
With the LR still warming up, the run never trained at the LR it was given;
with the LR cut to a floor by the schedule (a ``ReduceLROnPlateau`` that
reached ``min_lr``, a step decay applied too often), the run stalled because
the steps became too small, not because the peak LR was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paramdoctor.signals.noise import finite_xy


@dataclass(frozen=True)
class LrSchedule:
    """The shape of a learning-rate curve.

    ``first``/``peak``/``last`` are the first, largest and last LR;
    ``last_vs_peak`` their ratio. ``warmup_running`` is true when the LR rose
    (``last`` at least twice ``first``), ends at (within 5% of) its peak and
    was still rising over the last tenth of the curve: the warmup had not
    finished when the log ended. ``rise_fraction`` is the share of the curve
    spent rising to the peak. ``at_floor`` is true when the LR ended at a
    tenth of its peak or less; ``floor_x`` is where it reached the level it
    ended at (within 1%, or below 1% of the peak) and ``floor_fraction`` the
    share of the curve (by x) spent there since.
    """

    points: int
    first: float
    peak: float
    peak_x: float
    last: float
    last_vs_peak: float
    rise_fraction: float
    warmup_running: bool
    at_floor: bool
    floor_x: float | None
    floor_fraction: float


def lr_schedule(x, values) -> LrSchedule | None:
    """Describe a logged LR curve; None with fewer than 3 finite, non-negative points or an all-zero curve."""
    x, v = finite_xy(x, values)
    keep = v >= 0
    x, v = x[keep], v[keep]
    if v.size < 3 or not np.any(v > 0):
        return None
    first, last = float(v[0]), float(v[-1])
    p = int(np.argmax(v))
    peak = float(v[p])
    span = float(x[-1] - x[0]) or 1.0
    tail_start = int(np.floor(0.9 * (v.size - 1)))
    still_rising = v[-1] > v[tail_start] * (1 + 1e-9) if tail_start < v.size - 1 else False
    warmup = bool(last >= 0.95 * peak and last >= 2.0 * max(first, 1e-300) and still_rising)
    at_floor = bool(last <= 0.1 * peak)
    floor_x = None
    floor_fraction = 0.0
    if at_floor:
        level = max(1.01 * last, 0.01 * peak)
        above = np.nonzero(v > level)[0]
        start = int(above[-1]) + 1 if above.size else 0
        if start < v.size:
            floor_x = float(x[start])
            floor_fraction = float((x[-1] - x[start]) / span)
    return LrSchedule(
        points=int(v.size),
        first=first,
        peak=peak,
        peak_x=float(x[p]),
        last=last,
        last_vs_peak=last / peak,
        rise_fraction=float((x[p] - x[0]) / span),
        warmup_running=warmup,
        at_floor=at_floor,
        floor_x=floor_x,
        floor_fraction=floor_fraction,
    )
