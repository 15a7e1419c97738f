"""The order practitioners fix things in: make training stable, then make it fit, then regularise.

Findings are applied to the next config in this order, and when two findings
change the same key the one from the earlier stage wins.
"""

from __future__ import annotations

from paramdoctor.diagnosis import CATEGORIES, SEVERITIES

STAGES = ("stability", "fitting", "regularisation")
STAGE_OF_CATEGORY = {
    "diverged": 0,
    "unstable": 0,
    "lr_too_high": 0,
    "gradients": 0,
    "lr_too_low": 1,
    "underfitting": 1,
    "undertrained": 1,
    "overtrained": 1,
    "overfitting": 2,
    "forgetting": 2,
    "eval_mismatch": 2,
}
assert set(STAGE_OF_CATEGORY) == set(CATEGORIES), "every category needs a stage"


def stage_of(category: str) -> int:
    return STAGE_OF_CATEGORY[category]


def stage_name(category: str) -> str:
    return STAGES[stage_of(category)]


def severity_rank(severity: str) -> int:
    """0 for the most severe."""
    return SEVERITIES.index(severity)
