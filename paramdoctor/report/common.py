"""Small pieces every report format shares: ordering, value formatting, JSON text.

Kept here so the terminal, Markdown and HTML reports say the same thing in the
same order.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

from paramdoctor.diagnosis import SEVERITIES, Diagnosis, Finding, jsonable

TRAIN_HINT = "paramdoctor train {path}"
DEFAULT_NEXT_CONFIG = "next.yaml"


def ordered_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first; rules keep their engine order within a severity."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: rank.get(f.severity, len(SEVERITIES)))


def verdict(diag: Diagnosis) -> str:
    """``HEALTHY``, ``2 findings (1 error, 1 warning)``, ``NO VALIDATION CURVE`` or ``INTERRUPTED``."""
    if diag.interrupted:
        return "INTERRUPTED (not judged)"
    if not diag.findings:
        return "NO VALIDATION CURVE" if diag.missing else "HEALTHY"
    counts = {s: sum(1 for f in diag.findings if f.severity == s) for s in SEVERITIES}
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    noun = "finding" if len(diag.findings) == 1 else "findings"
    return f"{len(diag.findings)} {noun} ({parts})"


def run_label(diag: Diagnosis) -> str:
    if diag.run_name and diag.run_id:
        return f"{diag.run_name} ({diag.run_id})"
    return diag.run_name or diag.run_id or "(unnamed run)"


def fmt_value(value: Any) -> str:
    """A config value as a person reads it: ``0.0003``, ``null``, ``[0.9, 0.999]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return str(value)


def summary_items(diag: Diagnosis) -> list[tuple[str, str]]:
    """The summary as (label, text) pairs, in the engine's order, None values left out."""
    return [(str(k).replace("_", " "), fmt_value(v)) for k, v in diag.summary.items() if v is not None and v != ""]


def finding_heading(finding: Finding) -> str:
    """``on eval set mnli`` for a finding about one evaluation set; empty otherwise."""
    return f"on eval set {finding.eval_set}" if finding.eval_set else ""


def onset_text(finding: Finding) -> str:
    onset = finding.evidence.onset
    if onset is None:
        return ""
    unit = finding.evidence.x_unit or "epoch"
    return f"{unit} {fmt_value(int(onset) if float(onset).is_integer() else onset)}"


def diagnosis_json(diag: Diagnosis, *, indent: int | None = 2) -> str:
    """``Diagnosis.to_dict()`` as strict JSON text (the ``diagnose --json`` output and ``diagnosis.json``)."""
    return json.dumps(jsonable(diag.to_dict()), indent=indent, allow_nan=False)
