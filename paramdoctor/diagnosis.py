"""What a diagnosis is: findings with evidence, rules that could not judge, a prescription.

Produced by the decide stage (``paramdoctor.engine``), consumed by the tell stage
(``paramdoctor.report``, ``paramdoctor.writeback``). ``Diagnosis.to_dict`` is the
documented ``diagnose --json`` shape; change it only with the docs and tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

CATEGORIES = (
    "diverged",
    "unstable",
    "lr_too_high",
    "lr_too_low",
    "overfitting",
    "underfitting",
    "undertrained",
    "overtrained",
    "gradients",
    "forgetting",
    "eval_mismatch",
)
SEVERITIES = ("critical", "error", "warning", "info")  # most to least severe
JSON_SCHEMA_VERSION = 1

# Verdicts and their exit codes. HEALTHY is earned: a run whose validation curve
# could not be read is never healthy, it is NO_VALIDATION (with what was missing).
# A RUNNING run whose trainer stopped beating is INTERRUPTED: half a run gets no verdict.
HEALTHY, FINDINGS, NO_VALIDATION, INTERRUPTED = "healthy", "findings", "no_validation", "interrupted"
EXIT_CODES = {HEALTHY: 0, FINDINGS: 1, NO_VALIDATION: 3, INTERRUPTED: 4}


@dataclass
class Evidence:
    """The measured facts behind a finding.

    ``message`` is the rendered sentence ("val/loss bottomed at 0.21 in epoch 7
    of 40 and rose 38% while train/loss fell 61%"); ``values`` the numbers it
    quotes, by name; ``onset`` the epoch (or step, per ``x_unit``) where the
    symptom began, when it has one.
    """

    message: str
    values: dict[str, float | int | str | None] = field(default_factory=dict)
    onset: float | None = None
    x_unit: str = "epoch"


@dataclass
class Change:
    """One change to the config: dotted key, old and new value, and why.

    ``factor`` is new / old for a numeric change (None otherwise), the factor
    actually applied; ``note`` says when a clamp made it differ from the one
    the rule states ("x30 applied: x100 capped at 0.03").
    """

    key: str
    old: Any
    new: Any
    reason: str
    rule: str  # the code of the rule that asked for it
    factor: float | None = None
    note: str = ""


@dataclass
class Finding:
    code: str  # stable rule code, e.g. "PD201"
    slug: str  # names the symptom, e.g. "val-loss-turns-up"
    category: str  # one of CATEGORIES
    severity: str  # one of SEVERITIES
    title: str
    evidence: Evidence
    why: str  # why it matters, one or two sentences
    fix: str  # what to change, in words
    eval_set: str | None = None  # the evaluation set the finding is about, when the run has several


@dataclass
class Skipped:
    """A rule that could not judge this run, and why (too short, missing series, ...)."""

    code: str
    slug: str
    reason: str


@dataclass
class ToolPrescription:
    """The prescription in the vocabulary of the tool the run came from.

    ``name`` is the tool (``hf_trainer``, ``lightning``, ...); ``changes`` are
    ``paramdoctor.vocab.ToolChange`` items (dataclasses: ``key``, ``old``,
    ``new``, ``reason``, ``note``, ``source_key``, ``factor``). Filled by the
    tell stage for runs not trained by paramdoctor; None otherwise.
    """

    name: str
    changes: list[Any] = field(default_factory=list)


@dataclass
class Prescription:
    changes: list[Change] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # sentences: which change won and why
    next_config: dict[str, Any] = field(default_factory=dict)  # the full next config, nested
    tool: ToolPrescription | None = None  # the same changes in the source tool's own terms

    @property
    def patch(self) -> dict[str, Any]:
        return {c.key: c.new for c in self.changes}


@dataclass
class Diagnosis:
    run_id: str | None
    run_name: str | None
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    prescription: Prescription = field(default_factory=Prescription)
    summary: dict[str, Any] = field(default_factory=dict)  # best epoch, best value, epochs run, run state ...
    source: str = "paramdoctor"
    x_unit: str = "epoch"
    missing: str | None = None  # what could not be read, when the run has no readable validation curve
    eval_sets: list[str] = field(default_factory=list)  # the evaluation sets judged, when the run has several
    interrupted: str | None = None  # why the run was not judged: its trainer died, and how to resume it

    @property
    def status(self) -> str:
        """``interrupted`` when the trainer died mid-run; ``findings`` when any rule fired; else
        ``no_validation`` when no validation curve was readable; else ``healthy``."""
        if self.interrupted:
            return INTERRUPTED
        if self.findings:
            return FINDINGS
        return NO_VALIDATION if self.missing else HEALTHY

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 findings, 3 no readable validation curve, 4 interrupted (2 is every usage or input error)."""
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "status": self.status,
            "missing": self.missing,
            "interrupted": self.interrupted,
            "eval_sets": list(self.eval_sets),
            "source": self.source,
            "x_unit": self.x_unit,
            "summary": self.summary,
            "findings": [asdict(f) for f in self.findings],
            "skipped": [asdict(s) for s in self.skipped],
            "prescription": {
                "patch": self.prescription.patch,
                "changes": [asdict(c) for c in self.prescription.changes],
                "conflicts": list(self.prescription.conflicts),
                "next_config": self.prescription.next_config,
                "tool": asdict(self.prescription.tool) if self.prescription.tool is not None else None,
            },
        }


def jsonable(value: Any) -> Any:
    """Strict-JSON data: NaN and infinities become the strings "nan", "inf", "-inf"; numpy scalars plain numbers.

    The same convention as the run export (``paramdoctor.run/v1``).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(value)
