"""Signals on optimizer telemetry: gradient norms, update/weight ratios, drift from the start.

The update/weight ratio ||w_after - w_before|| / ||w_before|| is the classic
learning-rate sanity check (Karpathy's "about 1e-3 per step"). Healthy
fine-tuning sits roughly between 1e-5 and 1e-2 depending on the group and the
schedule; this module uses a deliberately wide band, flagging only ratios
*far* outside it: a median below 1e-5 (the weights barely move: the learning
rate is too small to matter) or above 1e-1 (each step rewrites a tenth of the
weights: the learning rate is far too large). The band is a rule parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from paramdoctor.signals.noise import finite_xy, median, rolling_median


@dataclass(frozen=True)
class UpdateBand:
    """Median update/weight ratio per layer group over the second half of training.

    ``highest``/``highest_group`` and ``lowest``/``lowest_group`` are the
    extreme group medians, ``overall`` the median across groups. Samples that
    are exactly zero (a frozen group, an LR of zero during warmup) are ignored.
    """

    groups: int
    highest: float
    highest_group: str
    lowest: float
    lowest_group: str
    overall: float


def _moving_samples(curves: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Each group's finite, nonzero samples in order; groups with none (frozen throughout) are left out."""
    moving = {}
    for group, (x, values) in curves.items():
        _, v = finite_xy(x, values)
        v = v[v > 0]
        if v.size:
            moving[group] = v
    return moving


def update_ratio_band(curves: dict[str, tuple]) -> UpdateBand | None:
    """Summarise update ratios of several groups; None when no group has nonzero samples."""
    medians = {group: float(median(v[v.size // 2 :])) for group, v in _moving_samples(curves).items()}
    if not medians:
        return None
    hi = max(medians, key=medians.__getitem__)
    lo = min(medians, key=medians.__getitem__)
    return UpdateBand(
        groups=len(medians),
        highest=medians[hi],
        highest_group=hi,
        lowest=medians[lo],
        lowest_group=lo,
        overall=float(median(list(medians.values()))),
    )


@dataclass(frozen=True)
class TypicalUpdates:
    """Typical update/weight ratios over most of training (the first ``fraction`` of each group's samples).

    ``backbone`` is the median over the non-head groups of their medians
    (None without such a group), ``head`` the head's median (None without a
    head), ``slowest_group``/``slowest`` the group that moved least.
    """

    groups: int
    backbone: float | None
    head: float | None
    slowest_group: str
    slowest: float


def typical_update_ratios(curves: dict[str, tuple], *, head: str = "head", fraction: float = 0.8) -> TypicalUpdates | None:
    """Per-group medians over the first ``fraction`` of training; None when no group moved."""
    medians = {group: float(median(v[: max(1, math.ceil(v.size * fraction))])) for group, v in _moving_samples(curves).items()}
    if not medians:
        return None
    others = [m for g, m in medians.items() if g != head]
    slowest = min(medians, key=medians.__getitem__)
    return TypicalUpdates(
        groups=len(medians),
        backbone=float(median(others)) if others else None,
        head=medians.get(head),
        slowest_group=slowest,
        slowest=medians[slowest],
    )


def early_update_ratio(curves: dict[str, tuple], fraction: float = 0.1) -> tuple[str, float] | None:
    """(group, ratio): the largest per-group median update/weight ratio over the first ``fraction`` of its samples.

    The first steps show how large the learning rate is for the weights before
    anything has gone wrong (later, a dead or exploded network's ratios say
    little). Zero samples (a frozen group, warmup at LR 0) are ignored.
    """
    early = {group: float(median(v[: max(1, math.ceil(v.size * fraction))])) for group, v in _moving_samples(curves).items()}
    if not early:
        return None
    group = max(early, key=early.__getitem__)
    return group, early[group]


def lr_cut(early_ratio: float | None, target: float = 1e-2, default: float = 0.1, lowest: float = 1e-3) -> float:
    """The factor to multiply a learning rate by after a blow-up.

    The update/weight ratio of a step scales with the learning rate (exactly
    for SGD, about for Adam), so ``target / early_ratio`` brings the first
    steps back to ``target`` (the top of the healthy range; ~1e-3 is typical).
    Never a milder cut than ``default`` (the run did blow up) nor a harsher
    one than ``lowest``; ``default`` when no telemetry was recorded.
    """
    if early_ratio is None or not early_ratio > 0:
        return default
    return float(f"{min(default, max(lowest, target / early_ratio)):.2g}")  # a factor a person would write


@dataclass(frozen=True)
class GradNormChange:
    """How the gradient norm changed over training, in orders of magnitude.

    ``early`` is the median of the first tenth of the finite samples, ``late``
    of the last tenth, ``peak`` the largest rolling median; ``log10_growth``
    = log10(peak / early) (explosion), ``log10_change`` = log10(late / early)
    (negative: shrinking), ``held`` the number of samples whose rolling median
    is at least ``factor`` times the early level, ``onset`` the first of them.
    """

    early: float
    late: float
    peak: float
    log10_growth: float
    log10_change: float
    held: int
    onset: float | None


def grad_norm_change(x, values, *, factor: float = 100.0) -> GradNormChange | None:
    """Gradient-norm growth and collapse; None with fewer than 20 finite samples."""
    x, v = finite_xy(x, values)
    if v.size < 20:
        return None
    tenth = max(v.size // 10, 3)
    tiny = 1e-30
    early = float(median(v[:tenth]))
    late = float(median(v[-tenth:]))
    level = rolling_median(v, 2)
    peak = float(np.max(level))
    above = np.nonzero(level >= factor * max(early, tiny))[0]
    return GradNormChange(
        early=early,
        late=late,
        peak=peak,
        log10_growth=float(np.log10(max(peak, tiny) / max(early, tiny))),
        log10_change=float(np.log10(max(late, tiny) / max(early, tiny))),
        held=int(above.size),
        onset=float(x[above[0]]) if above.size else None,
    )


@dataclass(frozen=True)
class Drift:
    """Distance of backbone weights from their initial (pretrained) values.

    Drift is ||w - w_initial|| / ||w_initial|| per group; ``highest`` is the
    largest final drift among backbone groups (``group`` names it), ``median``
    the median final drift across them, ``head`` the head's final drift (None
    without a head curve), ``onset`` the x where the worst group first passed
    ``threshold``.
    """

    groups: int
    highest: float
    group: str
    median: float
    head: float | None
    onset: float | None


def backbone_drift(curves: dict[str, tuple], *, head: str = "head", threshold: float = 0.5) -> Drift | None:
    """Final drift of the backbone groups; None without a backbone group with finite samples."""
    finals: dict[str, float] = {}
    paths: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    head_drift = None
    for group, (x, values) in curves.items():
        xs, v = finite_xy(x, values)
        if v.size == 0:
            continue
        if group == head:
            head_drift = float(v[-1])
            continue
        finals[group] = float(v[-1])
        paths[group] = (xs, v)
    if not finals:
        return None
    worst = max(finals, key=finals.__getitem__)
    xs, v = paths[worst]
    above = np.nonzero(v >= threshold)[0]
    return Drift(
        groups=len(finals),
        highest=finals[worst],
        group=worst,
        median=float(median(list(finals.values()))),
        head=head_drift,
        onset=float(xs[above[0]]) if above.size else None,
    )
