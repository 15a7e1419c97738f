"""Treat a run: follow the doctor's prescription, train it, diagnose the result, and repeat.

A diagnosis is a hypothesis ("the learning rate is too high; lower it to
0.01"); only a run tests it. :func:`treat` takes a diagnosed run that
paramdoctor trained, builds the prescribed next config, trains it as an MLflow
child of the treated run (``mlflow.parentRunId``, tag
``paramdoctor.treat.round``), diagnoses the child with the same engine and
rules, and says per finding whether it cleared and how the monitored metric's
best value, best epoch and time to best moved. The child becomes the next
round's patient. It stops when the patient is healthy, after ``rounds``
rounds, when the doctor prescribes no change, or when a round makes the best
metric worse (the best run so far is kept).

One run per arm is an anecdote: with ``seeds`` K > 1 both the current config
(the baseline) and the prescription are trained on the same K seeds (the
config's seed, seed+1, ...) and the round's verdict is a paired test on the K
best values (``scipy.stats.ttest_rel``): the mean difference, its 95%
t-interval and p. A round is "better" only when the interval excludes 0 on
the good side, "worse" when it excludes 0 on the bad side, else
"inconclusive"; a finding counts as cleared only when it cleared on every
seed. The treatment runs of one round are the next round's baseline, so each
config is trained once per seed.

Verdicts for one seed: "better", "worse" or "same" (the best values compared
in the metric's direction; a run with no finite best is worse than any run
with one).

Runs from other tools (or with no valid paramdoctor config) cannot be
trained here: the result has status ``cannot_train`` and the diagnosis, whose
prescription speaks that tool's vocabulary when the caller's judge attaches it.
Training is a function argument (``train``), as is reading a run back
(``read``) and judging it (``judge``): the command wires in
:func:`paramdoctor.training.fit`, MLflow and the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from paramdoctor.errors import ConfigError, InputError

if TYPE_CHECKING:
    from paramdoctor.config import TrainConfig
    from paramdoctor.diagnosis import Diagnosis
    from paramdoctor.record import RunRecord
    from paramdoctor.training import FitResult

ROUND_TAG = "paramdoctor.treat.round"
ROLE_TAG = "paramdoctor.treat.role"  # "treatment" (the prescription) or "baseline" (the config it replaces)
NATIVE_SOURCE = "paramdoctor"

HEALTHY, IMPROVED, NOT_IMPROVED, CANNOT_TRAIN = "healthy", "improved", "not_improved", "cannot_train"
BETTER, WORSE, SAME, INCONCLUSIVE = "better", "worse", "same", "inconclusive"


class Trainer(Protocol):
    def __call__(self, config: "TrainConfig", *, parent_run_id: str | None, extra_tags: dict[str, str]) -> "FitResult": ...


Judge = Callable[["RunRecord"], "Diagnosis"]
Reader = Callable[[str], "RunRecord"]


@dataclass
class Patient:
    """One run with its diagnosis and the numbers a round compares."""

    record: "RunRecord"
    diagnosis: "Diagnosis"
    best: float | None
    best_epoch: float | None
    time_to_best_s: float | None

    @property
    def run_id(self) -> str | None:
        return self.record.run_id

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.diagnosis.findings]

    @property
    def healthy(self) -> bool:
        return self.diagnosis.status == "healthy"


@dataclass
class Round:
    """What one round tried and what came of it (``to_dict`` is the ``--json`` shape)."""

    round: int
    runs: list[str]  # the prescription's runs (one per seed)
    baseline_runs: list[str]  # the current config on the same seeds (seeds > 1), else empty
    changes: dict[str, Any]  # the prescription applied: dotted key -> new value
    findings_before: list[str]
    findings_after: list[str]  # on any seed
    cleared: list[str]  # on every seed
    best_before: float | None
    best_after: float | None
    delta: float | None  # best_after - best_before (means over seeds), in the metric's units
    ci: tuple[float, float] | None  # 95% interval of the paired mean difference (seeds > 1)
    p: float | None  # paired t-test (seeds > 1)
    verdict: str  # better | worse | same | inconclusive
    best_epoch_before: float | None = None
    best_epoch_after: float | None = None
    time_to_best_before: float | None = None
    time_to_best_after: float | None = None
    winner: str | None = None  # the prescription's run with the best metric: the next round's patient
    healthy: bool = False  # every run of the prescription came out healthy

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "runs": list(self.runs),
            "baseline_runs": list(self.baseline_runs),
            "changes": dict(self.changes),
            "findings_before": list(self.findings_before),
            "findings_after": list(self.findings_after),
            "cleared": list(self.cleared),
            "best_before": self.best_before,
            "best_after": self.best_after,
            "delta": self.delta,
            "ci": list(self.ci) if self.ci is not None else None,
            "p": self.p,
            "verdict": self.verdict,
            "best_epoch_before": self.best_epoch_before,
            "best_epoch_after": self.best_epoch_after,
            "time_to_best_before_s": self.time_to_best_before,
            "time_to_best_after_s": self.time_to_best_after,
        }


@dataclass
class TreatResult:
    run_id: str | None
    metric: str
    mode: str
    diagnosis: "Diagnosis"  # of the treated run
    rounds: list[Round] = field(default_factory=list)
    best_run_id: str | None = None
    status: str = NOT_IMPROVED
    stop_reason: str = ""
    final: Patient | None = None  # the best run so far, diagnosed

    @property
    def exit_code(self) -> int:
        """0 when the final run is healthy, 1 when findings remain."""
        if self.status == CANNOT_TRAIN:
            return 0 if self.diagnosis.status == "healthy" else 1
        return 0 if self.status == HEALTHY else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "run_id": self.run_id,
            "metric": self.metric,
            "mode": self.mode,
            "rounds": [r.to_dict() for r in self.rounds],
            "best_run_id": self.best_run_id,
            "status": self.status,
            "stop_reason": self.stop_reason,
        }


# --- the loop ----------------------------------------------------------------------


def trainable_config(record: "RunRecord") -> "TrainConfig | None":
    """The run's config when paramdoctor trained it and the config still validates; else None."""
    from paramdoctor.config import validate

    if record.source != NATIVE_SOURCE or not record.config:
        return None
    try:
        return validate(record.config, where=f"run {record.run_id}")
    except ConfigError:
        return None


def treat(
    record: "RunRecord",
    *,
    judge: Judge,
    train: Trainer,
    read: Reader,
    rounds: int = 3,
    seeds: int = 1,
    on_round: Callable[[Round], None] | None = None,
) -> TreatResult:
    """Treat ``record`` for up to ``rounds`` rounds (see the module doc). ``on_round`` hears each round as it ends.

    A KeyboardInterrupt from ``train`` passes through: the runs already made stay.
    """
    from paramdoctor.report.compare import metric_and_mode

    if rounds < 1 or seeds < 1:
        raise InputError(f"--rounds and --seeds must be at least 1 (got {rounds} and {seeds})")
    diag = judge(record)
    metric, mode = metric_and_mode([record], None)
    result = TreatResult(run_id=record.run_id, metric=metric, mode=mode, diagnosis=diag, best_run_id=record.run_id)
    config = trainable_config(record)
    if config is None:
        result.status = CANNOT_TRAIN
        result.stop_reason = (
            f"the run comes from {record.source}, not paramdoctor: apply the prescription in that tool"
            if record.source != NATIVE_SOURCE
            else "the run has no valid paramdoctor config to train from"
        )
        return result
    if diag.status in ("interrupted", "no_validation"):
        why = diag.interrupted or diag.missing or diag.status
        raise InputError(f"run {record.run_id}: cannot treat a run the doctor could not judge ({why})")

    current = _patient(record, diag, metric, mode)
    current_config = config
    baseline: list[Patient] | None = None
    result.stop_reason = f"{rounds} round{'s' if rounds != 1 else ''} done"
    for r in range(1, rounds + 1):
        if current.healthy:
            result.stop_reason = "healthy"
            break
        prescription = current.diagnosis.prescription
        if not prescription.changes:
            result.stop_reason = "the doctor prescribes no change for the remaining findings"
            break
        from paramdoctor.config import validate

        next_config = validate(prescription.next_config, where=f"the prescription for run {current.run_id}")

        def run(cfg: "TrainConfig", seed: int | None, role: str) -> Patient:
            if seed is not None:
                cfg = cfg.model_copy(update={"seed": seed})
            fitted = train(cfg, parent_run_id=record.run_id, extra_tags={ROUND_TAG: str(r), ROLE_TAG: role})
            child = read(fitted.run_id)
            return _patient(child, judge(child), metric, mode)

        if seeds == 1:
            before, baseline_runs = [current], []
            treated = [run(next_config, None, "treatment")]
        else:
            seed_list = [config.seed + i for i in range(seeds)]
            if baseline is None:
                baseline = [run(current_config, s, "baseline") for s in seed_list]
            before, baseline_runs = baseline, [p.run_id for p in baseline]
            treated = [run(next_config, s, "treatment") for s in seed_list]

        outcome = _round(r, current, before, treated, baseline_runs, prescription.patch, mode)
        result.rounds.append(outcome)
        if on_round is not None:
            on_round(outcome)
        if outcome.verdict == WORSE or (outcome.delta is not None and _signed(outcome.delta, mode) < 0):
            result.stop_reason = f"round {r} made the best {metric} worse; keeping the best run so far"
            break
        current = next(p for p in treated if p.run_id == outcome.winner)
        current_config, baseline = next_config, treated
        if outcome.healthy:
            result.stop_reason = "healthy"
            break

    result.final = current
    result.best_run_id = current.run_id
    if current.healthy:
        result.status = HEALTHY
    elif current.run_id != record.run_id and any(x.verdict == BETTER or x.cleared for x in result.rounds):
        result.status = IMPROVED
    else:
        result.status = NOT_IMPROVED
    return result


# --- pieces --------------------------------------------------------------------------


def _patient(record: "RunRecord", diag: "Diagnosis", metric: str, mode: str) -> Patient:
    from paramdoctor.report.compare import run_row

    row = run_row(record, diag, metric, mode, [], {})
    best = row.best if row.best is not None and math.isfinite(row.best) else None
    return Patient(record, diag, best, row.best_epoch, row.time_to_best_s)


def _signed(delta: float, mode: str) -> float:
    """``delta`` turned so that positive means better."""
    return delta if mode == "max" else -delta


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _winner(treated: list[Patient], mode: str) -> Patient:
    scored = [p for p in treated if p.best is not None]
    if not scored:
        return treated[0]
    return max(scored, key=lambda p: _signed(p.best, mode))  # type: ignore[arg-type]


def _round(
    r: int,
    current: Patient,
    before: list[Patient],
    treated: list[Patient],
    baseline_runs: list[str],
    patch: dict[str, Any],
    mode: str,
) -> Round:
    findings_before = current.codes
    after_sets = [set(p.codes) for p in treated]
    findings_after = sorted(set().union(*after_sets), key=lambda c: (c not in findings_before, c))
    cleared = [c for c in findings_before if all(c not in s for s in after_sets)]
    delta, ci, p, verdict = compare_bests([b.best for b in before], [t.best for t in treated], mode)
    return Round(
        round=r,
        runs=[t.run_id for t in treated if t.run_id],
        baseline_runs=[b for b in baseline_runs if b],
        changes=dict(patch),
        findings_before=findings_before,
        findings_after=findings_after,
        cleared=cleared,
        best_before=_mean([b.best for b in before]),
        best_after=_mean([t.best for t in treated]),
        delta=delta,
        ci=ci,
        p=p,
        verdict=verdict,
        best_epoch_before=_mean([b.best_epoch for b in before]),
        best_epoch_after=_mean([t.best_epoch for t in treated]),
        time_to_best_before=_mean([b.time_to_best_s for b in before]),
        time_to_best_after=_mean([t.time_to_best_s for t in treated]),
        winner=_winner(treated, mode).run_id,
        healthy=all(t.healthy for t in treated),
    )


def compare_bests(
    before: list[float | None], after: list[float | None], mode: str
) -> tuple[float | None, tuple[float, float] | None, float | None, str]:
    """(mean difference after - before, its 95% CI, paired-t p, verdict) over runs paired by seed.

    One pair: no interval; the verdict compares the two values. Several: pairs
    where both runs have a finite best enter ``scipy.stats.ttest_rel``; the
    verdict is "better"/"worse" only when the interval excludes 0. A missing
    best (the run never produced a finite value) loses to any finite one.
    """
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    if len(before) == 1:
        b, a = before[0], after[0]
        if a is None or b is None:
            verdict = SAME if a is None and b is None else BETTER if b is None else WORSE
            return None, None, None, verdict
        delta = a - b
        return delta, None, None, BETTER if _signed(delta, mode) > 0 else WORSE if _signed(delta, mode) < 0 else SAME
    if len(pairs) < 2:
        gained = sum(1 for b, a in zip(before, after) if b is None and a is not None)
        lost = sum(1 for b, a in zip(before, after) if a is None and b is not None)
        delta = pairs[0][1] - pairs[0][0] if pairs else None
        return delta, None, None, BETTER if gained > lost else WORSE if lost > gained else INCONCLUSIVE
    import numpy as np
    from scipy import stats

    b_arr = np.array([b for b, _ in pairs], dtype=float)
    a_arr = np.array([a for _, a in pairs], dtype=float)
    diff = a_arr - b_arr
    n = diff.size
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    ci = (mean - half, mean + half)
    if np.all(diff == diff[0]):
        p = None if mean != 0 else 1.0  # no spread: the test is undefined, the interval a point
    else:
        p_value = float(stats.ttest_rel(a_arr, b_arr).pvalue)
        p = p_value if math.isfinite(p_value) else None
    lo, hi = sorted((_signed(ci[0], mode), _signed(ci[1], mode)))
    verdict = BETTER if lo > 0 else WORSE if hi < 0 else INCONCLUSIVE
    return mean, ci, p, verdict
