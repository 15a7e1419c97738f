"""Judge a run record with the rules: each rule fires (a Finding), stays silent, or is Skipped with a reason.

A rule never crashes the diagnosis: missing series, short curves and NaN/inf
are reasons or evidence, not exceptions.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from paramdoctor.diagnosis import Diagnosis, Evidence, Finding, Skipped, jsonable
from paramdoctor.engine import context
from paramdoctor.engine.measure import SIGNALS, Measurement, Request, Unavailable
from paramdoctor.engine.memo import RecordMemo
from paramdoctor.engine.params import resolve_disabled, resolve_params
from paramdoctor.engine.schema import OPS, Rule
from paramdoctor.engine.stages import severity_rank, stage_of
from paramdoctor.engine.summary import summarize
from paramdoctor.engine.template import render
from paramdoctor.record import RunRecord


@dataclass(frozen=True)
class Verdict:
    """A rule's outcome on one run: exactly one of ``finding`` and ``skipped`` is set when it is not silent."""

    rule: Rule
    finding: Finding | None = None
    skipped: Skipped | None = None


def evaluate_rule(
    rule: Rule, record: RunRecord, params: Mapping[str, Any] | None = None, memo: RecordMemo | None = None
) -> Verdict:
    """Judge one rule; ``params`` are its resolved parameters (defaults when None).

    ``memo`` is what this diagnosis already derived from ``record``
    (:class:`~paramdoctor.engine.memo.RecordMemo`; a fresh one when None):
    rules that share a signal and its settings share one measurement.
    """
    memo = RecordMemo(record) if memo is None else memo.belongs_to(record)
    params = dict(rule.params if params is None else params)
    reason = _missing_input(rule, record, memo) or _not_applicable(rule, record)
    if reason:
        return _skip(rule, reason)
    series = next((s for s in rule.series if record.get(s) is not None), None)
    spec = SIGNALS[rule.signal]
    request = Request(record=record, params=params, series=series, memo=memo)  # refuses another record's memo
    try:
        outcome = request.memo.measurement(spec, params, series, lambda: spec.measure(request))
    except (ArithmeticError, ValueError) as exc:  # a numerical corner case must not end the diagnosis
        return _skip(rule, f"signal {rule.signal} could not be measured ({exc})")
    if isinstance(outcome, Unavailable):
        return _skip(rule, outcome.reason)
    if not _conditions_hold(rule, outcome, params):
        return Verdict(rule)
    window = rule.persistence(params)
    if window is not None and (outcome.values.get("held") or 0) < window:
        return Verdict(rule)
    return Verdict(rule, finding=_finding(rule, outcome, params))


def evaluate(
    record: RunRecord,
    rules: Iterable[Rule],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    disable: Iterable[str] = (),
    memo: RecordMemo | None = None,
) -> list[Verdict]:
    """Every rule's verdict; findings sorted by severity, then stage, then code.

    What the rules derive from ``record`` is computed once for all of them
    (``memo``, a fresh :class:`~paramdoctor.engine.memo.RecordMemo` when None).
    """
    rules = list(rules)
    resolved = resolve_params(rules, params)
    disabled = resolve_disabled(rules, disable)
    memo = RecordMemo(record) if memo is None else memo.belongs_to(record)
    verdicts = []
    for rule in rules:
        if rule.code in disabled:
            verdicts.append(_skip(rule, "disabled in the project's rules.disable"))
            continue
        verdicts.append(evaluate_rule(rule, record, resolved[rule.code], memo))
    return sorted(verdicts, key=lambda v: (severity_rank(v.rule.severity), stage_of(v.rule.category), v.rule.code))


def diagnose(
    record: RunRecord,
    rules: Iterable[Rule] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    base_config: Mapping[str, Any] | None = None,
    disable: Iterable[str] = (),
    now: float | None = None,
) -> Diagnosis:
    """Judge ``record`` with ``rules`` (the built-in ones when None) and prescribe the next config.

    ``params`` overrides rule parameters ({code or slug: {param: value}});
    ``base_config`` is the config the prescription starts from (else the run's
    own config when it is a valid paramdoctor config, else the defaults);
    ``disable`` lists rule codes or slugs not to judge.

    A run with several evaluation sets is judged once per set
    (:func:`paramdoctor.engine.eval_sets.views`); a finding that differs
    between sets is reported once per set, naming it (``Finding.eval_set``).
    A run without a readable validation curve is never healthy: the
    diagnosis says what is missing (``Diagnosis.missing``). A RUNNING run
    whose trainer stopped its heartbeat (``paramdoctor.liveness``; ``now`` is
    the time to judge it at, unix seconds) is not judged at all: the
    diagnosis says it was interrupted and how to resume it.
    """
    import time

    from paramdoctor.engine.eval_sets import missing_validation, views
    from paramdoctor.engine.loader import load_rules
    from paramdoctor.engine.prescribe import prescribe
    from paramdoctor.liveness import interruption

    died = interruption(record.status, record.tags, time.time() if now is None else now, record.run_id)
    if died:
        return Diagnosis(
            run_id=record.run_id,
            run_name=record.run_name,
            prescription=prescribe([], record, base_config),
            summary=summarize(record),
            source=record.source,
            x_unit=record.x_unit,
            interrupted=died,
        )

    rules = load_rules() if rules is None else list(rules)
    seen = views(record)
    memos = [RecordMemo(view) for _, view in seen]  # one per view: each view is a record of its own
    judged = [(name, view, evaluate(view, rules, params, disable, memo)) for (name, view), memo in zip(seen, memos)]
    fired = _merge_findings(judged)
    fired_codes = {rule.code for rule, _ in fired}
    first_verdicts = judged[0][2]
    named = [name for name, _, _ in judged if name is not None]
    return Diagnosis(
        run_id=record.run_id,
        run_name=record.run_name,
        findings=[f for _, f in fired],
        skipped=[
            v.skipped
            for v in sorted(first_verdicts, key=lambda v: v.rule.code)
            if v.skipped is not None and v.rule.code not in fired_codes
        ],
        prescription=prescribe(_one_per_rule(fired), record, base_config),
        summary=summarize(judged[0][1], memos[0]),
        source=record.source,
        x_unit=record.x_unit,
        missing=missing_validation(record),
        eval_sets=named if len(judged) > 1 else [],
    )


def _merge_findings(judged: list[tuple[str | None, RunRecord, list[Verdict]]]) -> list[tuple[Rule, Finding]]:
    """The findings of every evaluation set: one per rule when they agree, one per set (named) when they differ."""
    if len(judged) == 1:
        return [(v.rule, v.finding) for v in judged[0][2] if v.finding is not None]
    per_rule: dict[str, list[tuple[str | None, Rule, Finding]]] = {}
    order: list[str] = []
    for name, _, verdicts in judged:
        for v in verdicts:
            if v.finding is None:
                continue
            if v.rule.code not in per_rule:
                order.append(v.rule.code)
            per_rule.setdefault(v.rule.code, []).append((name, v.rule, v.finding))
    merged: list[tuple[Rule, Finding]] = []
    for code in order:
        hits = per_rule[code]
        messages = {f.evidence.message for _, _, f in hits}
        if len(hits) == len(judged) and len(messages) == 1:  # the same finding whatever the set: it is not about one
            merged.append((hits[0][1], hits[0][2]))
            continue
        for name, rule, finding in hits:
            merged.append((rule, dataclasses.replace(finding, eval_set=name or "validation")))
    return merged


def _one_per_rule(fired: list[tuple[Rule, Finding]]) -> list[tuple[Rule, Finding]]:
    """The first finding of each rule: a rule's patch applies once, whichever sets it fired on."""
    seen: set[str] = set()
    out = []
    for rule, finding in fired:
        if rule.code not in seen:
            seen.add(rule.code)
            out.append((rule, finding))
    return out


# --- the steps --------------------------------------------------------------------


def _skip(rule: Rule, reason: str) -> Verdict:
    return Verdict(rule, skipped=Skipped(code=rule.code, slug=rule.slug, reason=reason))


def _not_applicable(rule: Rule, record: RunRecord) -> str | None:
    scope = rule.applies_to
    if scope.status is not None and record.status not in scope.status:
        if record.is_running:
            return "the run is still running; this rule judges finished runs"
        return f"judges only runs that are {', '.join(scope.status)}; this one is {record.status}"
    stop = record.meta.get("stop_reason")
    if scope.stop_reason is not None and stop is not None and stop not in scope.stop_reason:
        return f"judges only runs stopped by {' or '.join(scope.stop_reason)}; this one stopped by {stop}"
    if scope.pretrained is not None:
        pretrained = context.pretrained_of(record)
        if pretrained is None:
            return "cannot tell whether the run started from pretrained weights"
        if scope.pretrained and not pretrained:
            return "the run did not start from pretrained weights (model.weights is not set)"
        if not scope.pretrained and pretrained:
            return "the run started from pretrained weights (model.weights is set): small backbone steps are the recipe there"
    return None


def _matching(record: RunRecord, pattern: str, memo: RecordMemo | None = None) -> list[str]:
    if "*" not in pattern:
        return [pattern] if record.get(pattern) is not None else []

    def matches() -> list[str]:
        return [k for k in sorted(record.series) if fnmatch.fnmatchcase(k, pattern) and record.get(k) is not None]

    return matches() if memo is None else memo.once(("matching", pattern), matches)


def _recorded(record: RunRecord, memo: RecordMemo | None = None) -> dict[str, int]:
    """{key: points} of the record's non-empty series (what ``record.get`` finds), once per diagnosis."""

    def lengths() -> dict[str, int]:
        return {k: len(s) for k, s in record.series.items() if len(s)}

    return lengths() if memo is None else memo.once(("recorded",), lengths)


def _missing_input(rule: Rule, record: RunRecord, memo: RecordMemo | None = None) -> str | None:
    recorded = _recorded(record, memo)
    for key in rule.requires:
        if key not in recorded if "*" not in key else not _matching(record, key, memo):
            return f"needs {key}, which this run did not record"
    primary = next((s for s in rule.series if s in recorded), None)
    if rule.series and primary is None:
        return f"needs one of {', '.join(rule.series)}, none of which this run recorded"
    if primary is None:
        primary = next((k for k in rule.requires if "*" not in k), None)
    if primary is not None:
        n = len(record.series[primary])
        if n < rule.min_points:
            return f"needs at least {rule.min_points} points of {primary}, has {n}"
    return None


def _conditions_hold(rule: Rule, outcome: Measurement, params: Mapping[str, Any]) -> bool:
    for cond in rule.when:
        value = outcome.values.get(cond.field)
        if value is None:
            if cond.if_missing == "pass":
                continue
            return False
        target = params[cond.param] if cond.param is not None else cond.value
        try:
            holds = bool(OPS[cond.op](value, target))
        except TypeError:
            holds = False
        if not holds:
            return False
    return True


def _finding(rule: Rule, outcome: Measurement, params: Mapping[str, Any]) -> Finding:
    values = {**params, **outcome.values}
    message = render(rule.evidence, {**values, "unit": outcome.unit, "code": rule.code, "slug": rule.slug})
    onset = outcome.onset
    return Finding(
        code=rule.code,
        slug=rule.slug,
        category=rule.category,
        severity=rule.severity,
        title=rule.title,
        evidence=Evidence(
            message=message,
            values={k: _json_value(v) for k, v in outcome.values.items()},
            onset=None if onset is None or not math.isfinite(onset) else float(onset),
            x_unit=outcome.unit,
        ),
        why=" ".join(rule.doc.why.split()),
        fix=" ".join(rule.doc.fix.split()),
    )


def _json_value(value: Any) -> float | int | str | None:
    """A scalar strict JSON can hold (NaN/inf as strings, numpy scalars unwrapped); anything else as its text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return jsonable(value)
    return str(value)
