"""Signals: pure numpy/scipy functions of curves, each returning a small typed result.

A signal measures; it never decides. Rules (``rules/*.yaml``) compare the
fields of these results with thresholds. Every function returns None when the
curve is too short to say anything, and ignores non-finite points except
:func:`first_nonfinite`, for which they are the evidence.
"""

from paramdoctor.signals.curves import (
    BestPoint,
    Divergence,
    Gap,
    Oscillation,
    best_point,
    divergence_onset,
    generalization_gap,
    oscillation,
)
from paramdoctor.signals.decay import DecayStrength, decay_strength
from paramdoctor.signals.events import (
    Explosion,
    IsolatedSpikes,
    NonFinite,
    Spikes,
    explosion,
    first_nonfinite,
    isolated_spikes,
    spikes,
)
from paramdoctor.signals.levels import (
    ChanceLevel,
    InitialLoss,
    NearChance,
    Progress,
    chance_loss,
    infer_chance,
    initial_loss,
    near_chance,
    progress,
)
from paramdoctor.signals.noise import finite_xy, mad, noise_scale, rolling_median, smooth, smoothing_window
from paramdoctor.signals.schedule import LrSchedule, lr_schedule
from paramdoctor.signals.telemetry import (
    Drift,
    GradNormChange,
    TypicalUpdates,
    UpdateBand,
    backbone_drift,
    early_update_ratio,
    grad_norm_change,
    lr_cut,
    typical_update_ratios,
    update_ratio_band,
)
from paramdoctor.signals.trend import Improvement, Plateau, Trend, plateau, still_improving, trend_test

__all__ = [
    "BestPoint",
    "ChanceLevel",
    "LrSchedule",
    "DecayStrength",
    "Divergence",
    "Drift",
    "Explosion",
    "Gap",
    "GradNormChange",
    "Improvement",
    "InitialLoss",
    "IsolatedSpikes",
    "NearChance",
    "NonFinite",
    "Oscillation",
    "Plateau",
    "Progress",
    "Spikes",
    "Trend",
    "TypicalUpdates",
    "UpdateBand",
    "backbone_drift",
    "best_point",
    "chance_loss",
    "decay_strength",
    "early_update_ratio",
    "lr_cut",
    "divergence_onset",
    "explosion",
    "finite_xy",
    "first_nonfinite",
    "generalization_gap",
    "grad_norm_change",
    "infer_chance",
    "initial_loss",
    "isolated_spikes",
    "lr_schedule",
    "mad",
    "near_chance",
    "noise_scale",
    "oscillation",
    "plateau",
    "progress",
    "rolling_median",
    "smooth",
    "smoothing_window",
    "spikes",
    "still_improving",
    "trend_test",
    "typical_update_ratios",
    "update_ratio_band",
]
