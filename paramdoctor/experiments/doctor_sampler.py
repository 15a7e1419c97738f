"""Doctor-guided search (``tune --sampler doctor``): the next trial is the best trial's prescription.

The doctor already says what to try next for one run: diagnose it, and its
prescription is a full next config. A study can follow that advice: after
every trial, :class:`DoctorGuide` diagnoses the best finished (COMPLETE)
trial so far (its MLflow run, read back, with every rule), takes the
prescription's ``next_config``, reads the search space's keys from it (each
moved into its range, the nearest choice for a categorical) and enqueues
them with ``study.enqueue_trial``: Optuna runs an enqueued trial before
asking its sampler. When the doctor has nothing new to say, the base sampler
(TPE) samples the next trial as usual:

* the best trial is healthy (no findings), or its prescription changes
  nothing;
* the prescription changes only keys outside the search space (say
  ``trainer.max_epochs``): those are not what the study searches, so they
  are left out (and reported in the trial's user attrs), and what remains is
  the best trial's own params;
* those params were already tried (any trial, finished or queued; floats
  compared to 1e-9 relative).

With ``optimizer.backbone_lr_ratio`` searched, a prescription that changes
``optimizer.lr`` alone (PD203: "lr x2") changes the step size of the whole
network: the ratio stays as it was. (A trial's ``backbone_lr`` is explicit,
``lr x ratio``, so the prescription would otherwise move only the head and
halve the ratio.) A prescription that changes ``optimizer.backbone_lr``
(PD303) moves the ratio.

A prescription is computed once per best trial. The enqueued trial carries
user attrs ``source=doctor``, ``doctor.from_trial``, ``doctor.findings``
(the codes) and ``doctor.changes`` (``{key: [old, new]}``), so every trial
says where its params came from (``baseline``, ``doctor`` or ``sampler``).
This is the enqueue mechanism, not a sampler subclass: Optuna's own queue,
storage and TPE do the rest, and several processes sharing the study see
the same queue (``skip_if_exists`` keeps them from enqueueing a proposal twice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from paramdoctor.errors import ParamDoctorError
from paramdoctor.experiments.search_space import RATIO_KEY

if TYPE_CHECKING:
    import optuna

    from paramdoctor.config import TrainConfig
    from paramdoctor.diagnosis import Diagnosis
    from paramdoctor.experiments.search_space import SearchSpace
    from paramdoctor.record import RunRecord

SOURCE_ATTR = "source"  # user attr: baseline | doctor | sampler
BASELINE, DOCTOR, SAMPLER = "baseline", "doctor", "sampler"
RUN_ID_ATTR = "run_id"


@dataclass
class Proposal:
    """What the doctor prescribes after one trial, in search-space params."""

    from_trial: int
    findings: list[str]
    params: dict[str, Any]
    changes: dict[str, list[Any]]  # searched key -> [old, new]
    outside: dict[str, list[Any]] = field(default_factory=dict)  # prescribed changes to keys not searched

    def user_attrs(self) -> dict[str, Any]:
        return {
            SOURCE_ATTR: DOCTOR,
            "doctor.from_trial": self.from_trial,
            "doctor.findings": list(self.findings),
            "doctor.changes": {k: list(v) for k, v in self.changes.items()},
            "doctor.not_searched": {k: list(v) for k, v in self.outside.items()},
        }


class DoctorGuide:
    """Enqueues the best trial's prescription; use as an ``optimize`` callback and call :meth:`propose` once first.

    ``read`` turns a run id into a record (MLflow), ``judge`` a record into a
    diagnosis (the engine with this invocation's rules); ``base`` is the
    study's base config. ``notes`` keeps one line per decision.
    """

    def __init__(
        self,
        space: "SearchSpace",
        base: "TrainConfig",
        *,
        judge: Callable[["RunRecord"], "Diagnosis"],
        read: Callable[[str], "RunRecord"],
    ) -> None:
        self.space, self.base, self.judge, self.read = space, base, judge, read
        self._proposals: dict[int, Proposal | None] = {}
        self.notes: list[str] = []
        self.enqueued = 0

    def __call__(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        self.propose(study)

    def propose(self, study: "optuna.Study") -> Proposal | None:
        """Enqueue the prescription of the best trial when it is new; return it (None: the sampler goes next)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return None  # something is queued already (the baseline, another process's proposal)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            return None
        best = study.best_trial
        if best.number not in self._proposals:
            self._proposals[best.number] = self._prescribe(best)
        proposal = self._proposals[best.number]
        if proposal is None:
            return None
        if any(_same(proposal.params, _params_of(t)) for t in trials):
            self._note(f"trial {best.number}'s prescription was already tried: the sampler picks the next trial")
            return None
        study.enqueue_trial(proposal.params, user_attrs=proposal.user_attrs(), skip_if_exists=True)
        self.enqueued += 1
        changes = ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in proposal.changes.items())
        self._note(f"enqueued trial {best.number}'s prescription ({', '.join(proposal.findings)}): {changes}")
        return proposal

    def _prescribe(self, best: "optuna.trial.FrozenTrial") -> Proposal | None:
        from paramdoctor.config import validate

        run_id = best.user_attrs.get(RUN_ID_ATTR)
        if not run_id:
            self._note(f"trial {best.number} has no run to diagnose: the sampler picks the next trial")
            return None
        try:
            diagnosis = self.judge(self.read(run_id))
        except Exception as exc:  # noqa: BLE001 - a run the guide cannot read must not end the study
            self._note(f"trial {best.number} could not be diagnosed ({_first_line(exc)}): the sampler picks the next trial")
            return None
        codes = [f.code for f in diagnosis.findings]
        prescription = diagnosis.prescription
        if diagnosis.status != "findings" or not prescription.changes:
            why = "healthy" if diagnosis.status == "healthy" else f"{diagnosis.status}, no change prescribed"
            self._note(f"trial {best.number} is {why}: the sampler picks the next trial")
            return None
        try:
            next_config = validate(prescription.next_config, where=f"the prescription for trial {best.number}")
        except ParamDoctorError as exc:
            self._note(f"trial {best.number}'s prescription is not a valid config ({exc}): the sampler picks the next trial")
            return None
        params = self.space.params_of(next_config)
        if RATIO_KEY in params and RATIO_KEY in best.params and "optimizer.backbone_lr" not in prescription.patch:
            # "optimizer.lr x2" is the network's step size: the backbone keeps its share (the trial's
            # backbone_lr is explicit, so the engine would leave it and halve the ratio instead)
            params[RATIO_KEY] = self.space[RATIO_KEY].clip(best.params[RATIO_KEY])
        old = {k: best.params.get(k) for k in params}
        changes = {k: [old[k], v] for k, v in params.items() if not _close(old[k], v)}
        searched = set(self.space.keys) | {"optimizer.backbone_lr"}
        outside = {c.key: [c.old, c.new] for c in prescription.changes if c.key not in searched}
        if not changes:
            what = ", ".join(sorted(outside)) or "nothing"
            self._note(f"trial {best.number}'s prescription ({', '.join(codes)}) changes no searched key (only {what}): "
                       "the sampler picks the next trial")
            return None
        return Proposal(best.number, codes, params, changes, outside)

    def _note(self, line: str) -> None:
        if not self.notes or self.notes[-1] != line:
            self.notes.append(line)


def _params_of(trial: "optuna.trial.FrozenTrial") -> dict[str, Any]:
    return trial.params or trial.system_attrs.get("fixed_params", {})


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
