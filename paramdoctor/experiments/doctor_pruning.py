"""Doctor pruning: stop a trial the moment its partial curves show it cannot recover.

Optuna's pruners compare a trial's intermediate values with other trials'
(below the median at this epoch: stop). The doctor judges the trial on its
own: after every epoch the trial's curves so far go through the rules, and a
*severe* finding ends it at once, with the finding as the reason.

Which findings are severe is read from each rule's ``severity`` and
``category``, not from a list of codes, so a user's own rules (``--rules``)
take part by what they declare. A finding prunes when its severity is in
:data:`PRUNE_SEVERITIES` (critical, error) **and** its category is in
:data:`PRUNE_CATEGORIES`:

* ``diverged`` - the loss is NaN/inf or exploded far above its minimum
  (PD101 ``loss-not-finite``, PD102 ``loss-explodes``): the weights are
  being destroyed; nothing after the onset is training.
* ``underfitting`` at error severity - training never got away from chance
  (PD205 ``stuck-at-chance``): a dead network. (PD202, the warning, is a slow
  run, not a dead one: never pruned.)
* ``eval_mismatch`` - validation stays at chance while training learns
  (PD501 ``val-stays-at-chance``): the score is measuring a bug, and more
  epochs will not fix it.

Left out on purpose, though some are errors: ``overfitting`` (PD301; early
stopping keeps the best epoch, which is what the trial is scored on),
``gradients`` (PD401, PD403, PD405: update sizes and gradient norms are
causes, not outcomes; SGD at lr 1 with clipping moves weights 10% per step and
still reaches 99% on digits, and a real explosion shows in the loss, where
PD101/PD102 catch it), and every ``warning``.

Timing: a divergence prunes at any epoch. A trial is not called dead (or its
validation broken) while its learning rate is still warming up: findings of
the other categories prune only from epoch ``ceil(warmup_epochs) +``
:data:`EPOCHS_AT_PEAK_LR` on (for ``onecycle``, ``pct_start x max_epochs``
stands for the warmup) (AdamW at lr 3e-5 with 2 warmup epochs is still
at chance after 3 epochs; it is slow, not dead).

Validation can overrule a dead-network call. PD205 judges the training loss,
which dropout, augmentation and label smoothing hold up in training mode
only: a heavily regularised trial can sit at the chance-level training loss
while it validates at 50% on 10 classes. An ``underfitting`` finding does not
prune while the best validation accuracy is at least twice chance (or the
best validation loss is below 0.8 x the chance-level loss): that trial is
learning, slowly, and its score will say how well.

A diverged trial (``fit`` already stops on a non-finite loss, status FAILED)
is pruned too, never counted as a crash: it is judged the same way, so its
reason is PD101's evidence.

The partial curves come from memory: ``fit``'s ``metric_tap`` receives every
metric the monitor logs (a :class:`paramdoctor.hooks.MemorySink`), and the
run's tags (number of classes, steps per epoch) are read once when it starts.
Per epoch this costs building a record from those lists and evaluating the
severe rules only (a few milliseconds; ``check_ms`` records it), against a
``get_metric_history`` per metric key per epoch through MLflow.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from paramdoctor import keys

if TYPE_CHECKING:
    import optuna
    from mlflow.entities import Run

    from paramdoctor.diagnosis import Finding
    from paramdoctor.engine.schema import Rule
    from paramdoctor.hooks import MemorySink
    from paramdoctor.record import RunRecord

PRUNE_SEVERITIES = ("critical", "error")
PRUNE_CATEGORIES = ("diverged", "underfitting", "eval_mismatch")
ANYTIME_CATEGORIES = ("diverged",)  # the others wait until the learning rate has reached its peak
EPOCHS_AT_PEAK_LR = 2  # epochs after warmup before a trial may be called dead
VETOED_BY_VALIDATION = ("underfitting",)  # a "dead" call the validation curve can overrule

TAG_PRUNED_BY = "paramdoctor.pruned_by"  # a rule code (PD102), optuna:median, optuna:hyperband or nonfinite_loss
TAG_PRUNED_REASON = "paramdoctor.pruned_reason"  # the finding's evidence line, or the pruner's reason

OPTUNA_PRUNERS = {"median": "Optuna's median pruner: below the median of earlier trials at this epoch",
                  "hyperband": "Optuna's Hyperband pruner: not promoted to the next rung"}


def is_severe(severity: str, category: str) -> bool:
    """Whether a finding of this severity and category prunes a trial (see the module doc)."""
    return severity in PRUNE_SEVERITIES and category in PRUNE_CATEGORIES


def pruning_rules(rules: Iterable["Rule"]) -> list["Rule"]:
    """The rules whose findings prune: severe by their own severity and category."""
    return [r for r in rules if is_severe(r.severity, r.category)]


class DoctorPruner:
    """Judges partial curves with the severe rules only; ``judge`` returns the finding that prunes, or None."""

    def __init__(
        self,
        rules: Iterable["Rule"] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        disable: Iterable[str] = (),
    ) -> None:
        if rules is None:
            from paramdoctor.engine import load_rules

            rules = load_rules()
        self.rules = pruning_rules(rules)
        self.params = params
        self.disable = tuple(disable)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.rules]

    def judge(self, record: "RunRecord", *, anytime_only: bool = False) -> "Finding | None":
        """The most severe pruning finding on ``record``; ``anytime_only``: divergence findings only."""
        from paramdoctor.engine import evaluate

        rules = [r for r in self.rules if r.category in ANYTIME_CATEGORIES] if anytime_only else self.rules
        for verdict in evaluate(record, rules, self.params, self.disable):  # most severe first
            finding = verdict.finding
            if finding is None:
                continue
            if finding.category in VETOED_BY_VALIDATION and validation_learns(record):
                continue
            return finding
        return None

    @staticmethod
    def first_epoch_for_all(warmup_epochs: float) -> int:
        """The first epoch at which every severe finding may prune (divergence may at any epoch)."""
        return math.ceil(warmup_epochs) + EPOCHS_AT_PEAK_LR


def validation_learns(record: "RunRecord") -> str | None:
    """Why the validation curve says the run is learning (twice chance accuracy, or loss under 0.8x chance), or None."""
    import numpy as np

    from paramdoctor.engine import context

    chance = context.chance_level(record)
    if chance is None:
        return None
    acc = record.get(keys.VAL_ACC)
    if acc is not None and chance.acc:
        finite = acc.values[np.isfinite(acc.values)]
        bar = min(2 * chance.acc, (1 + chance.acc) / 2)
        if finite.size and float(finite.max()) >= bar:
            return f"val/acc reached {float(finite.max()):.3g} (chance {chance.acc:.2g})"
    loss = record.get(keys.VAL_LOSS)
    if loss is not None and chance.loss:
        finite = loss.values[np.isfinite(loss.values)]
        if finite.size and float(finite.min()) <= 0.8 * chance.loss:
            return f"val/loss fell to {float(finite.min()):.3g} (chance level {chance.loss:.3g})"
    return None


def partial_record(sink: "MemorySink", run: "Run", config: dict[str, Any], experiment: str | None = None) -> "RunRecord":
    """The run as far as it got: the tapped metrics as series, the run's tags and config (no request made)."""
    from paramdoctor.record import Series
    from paramdoctor.sources.mlflow_source import build_record

    series = {key: Series.from_pairs(pairs) for key, pairs in sink.metrics.items() if pairs}
    return build_record(run, series, config=config, experiment=experiment)


@dataclass
class Pruned:
    """Why a trial was stopped: by a rule (its code and evidence) or by Optuna's pruner."""

    by: str  # PD102, optuna:median, optuna:hyperband, nonfinite_loss
    reason: str
    epoch: int | None = None

    def tags(self) -> dict[str, str]:
        return {TAG_PRUNED_BY: self.by, TAG_PRUNED_REASON: self.reason}


class PruningListener:
    """``fit``'s listener for one trial: reports to Optuna each epoch and stops the run when it should end.

    After each epoch: the best monitored value so far is reported
    (``trial.report(best, epoch)``); then the doctor judges the partial curves
    (when ``doctor`` is set) and a severe finding stops the run; then Optuna's
    pruner is asked (``trial.should_prune()``, when ``optuna_pruner`` names
    one). Stopping raises :class:`paramdoctor.training.fit.StopTraining`, so
    ``fit`` ends the run in order (FINISHED, stop reason ``pruned``, the
    reason as tags); ``pruned`` says why afterwards. ``inner`` gets every
    event too (a progress display).
    """

    def __init__(
        self,
        trial: "optuna.trial.Trial | None",
        sink: "MemorySink",
        config: dict[str, Any],
        *,
        monitor: str = keys.VAL_ACC,
        mode: str = "max",
        doctor: DoctorPruner | None = None,
        optuna_pruner: str | None = None,
        fetch_run: Callable[[str], "Run"] | None = None,
        experiment: str | None = None,
        inner: Any = None,
    ) -> None:
        self.trial, self.sink, self.config = trial, sink, config
        self.monitor, self.mode = monitor, mode
        self.doctor, self.optuna_pruner = doctor, optuna_pruner
        self.fetch_run, self.experiment, self.inner = fetch_run, experiment, inner
        self.run: "Run | None" = None
        self.run_id: str | None = None
        self.best: float | None = None
        self.pruned: Pruned | None = None
        self.check_seconds: list[float] = []
        self.warmup_epochs = rising_epochs(config)

    # --- fit's listener protocol
    def on_fit_start(self, *, total_epochs: int, steps_per_epoch: int, run_id: str, device: str) -> None:
        self.run_id = run_id
        if self.trial is not None:
            self.trial.set_user_attr("run_id", run_id)  # at once: an interrupted trial still names its run
        if self.doctor is not None:
            self.run = (self.fetch_run or _fetch_run)(run_id)  # once: the tags the rules read (classes, steps)
        if self.inner is not None:
            self.inner.on_fit_start(total_epochs=total_epochs, steps_per_epoch=steps_per_epoch, run_id=run_id, device=device)

    def on_step(self, **kwargs: Any) -> None:
        if self.inner is not None:
            self.inner.on_step(**kwargs)

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        from paramdoctor.training.fit import StopTraining

        if self.inner is not None:
            self.inner.on_epoch_end(epoch=epoch, metrics=metrics, improved=improved)
        value = metrics.get(self.monitor)
        if value is not None and math.isfinite(value):
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            self.best = value if better else self.best
        if self.trial is not None and self.best is not None:
            self.trial.report(self.best, epoch)
        if self.doctor is not None:
            finding = self.check(anytime_only=epoch < self.doctor.first_epoch_for_all(self.warmup_epochs))
            if finding is not None:
                self.pruned = Pruned(finding.code, finding.evidence.message, epoch)
        if self.pruned is None and self.optuna_pruner and self.trial is not None and self.trial.should_prune():
            best = "-" if self.best is None else f"{self.best:.4g}"
            self.pruned = Pruned(
                f"optuna:{self.optuna_pruner}",
                f"best {self.monitor} {best} by epoch {epoch}: {OPTUNA_PRUNERS.get(self.optuna_pruner, self.optuna_pruner)}",
                epoch,
            )
        if self.pruned is not None:
            raise StopTraining("pruned", f"pruned by {self.pruned.by}: {self.pruned.reason}", tags=self.pruned.tags())

    # --- the doctor
    def check(self, *, anytime_only: bool = False) -> "Finding | None":
        """Judge the curves so far with the severe rules; the time it took is kept in ``check_seconds``."""
        if self.doctor is None or self.run is None:
            return None
        t0 = time.perf_counter()
        record = partial_record(self.sink, self.run, self.config, self.experiment)
        finding = self.doctor.judge(record, anytime_only=anytime_only)
        self.check_seconds.append(time.perf_counter() - t0)
        return finding

    def diverged(self, failure: str | None) -> Pruned:
        """Why a run ``fit`` stopped on a non-finite loss was pruned: the doctor's finding, else fit's own reason."""
        finding = self.check() if self.doctor is not None else None
        if finding is not None:
            self.pruned = Pruned(finding.code, finding.evidence.message)
        else:
            self.pruned = Pruned("nonfinite_loss", failure or "the loss became non-finite")
        return self.pruned

    @property
    def check_ms(self) -> float | None:
        """Mean milliseconds per doctor check (one per epoch)."""
        return 1000 * sum(self.check_seconds) / len(self.check_seconds) if self.check_seconds else None


def rising_epochs(config: dict[str, Any]) -> float:
    """Epochs the learning rate spends rising to its peak: the warmup, or onecycle's ``pct_start`` of the run."""
    scheduler = config.get("scheduler") if isinstance(config, dict) else None
    scheduler = scheduler if isinstance(scheduler, dict) else {}
    if scheduler.get("name") == "onecycle":
        trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
        return float(scheduler.get("pct_start") or 0.0) * float(trainer.get("max_epochs") or 0)
    return float(scheduler.get("warmup_epochs") or 0.0)


def _fetch_run(run_id: str) -> "Run":
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.run import resolve_tracking_uri

    return MlflowClient(tracking_uri=resolve_tracking_uri()).get_run(run_id)
