"""Tune: an Optuna study over a config's hyperparameters, every trial an MLflow child run judged by the doctor.

:func:`run_tune` runs ``trials`` trials of one study. Each trial takes its
params from the sampler (or the queue), trains ``base`` with them through
:func:`paramdoctor.training.fit` as an MLflow child (``mlflow.parentRunId``)
of the study's parent run, reports the best monitored value so far to Optuna
after every epoch (``trial.report`` / ``trial.should_prune`` for the median
or Hyperband pruner), and, with doctor pruning on, is stopped the moment a
severe finding fires on its partial curves
(:mod:`paramdoctor.experiments.doctor_pruning`). The objective is the run's
best monitored value (``early_stopping.monitor``: ``val/acc`` maximised,
``val/loss`` minimised), the value early stopping keeps.

Where things go:

* **Study** - Optuna storage ``storage`` (any SQLAlchemy URL:
  ``sqlite:///tune.db``, ``postgresql://...``); by default an SQLite file
  ``optuna.db`` next to the MLflow store when that is a local SQLite file
  (``sqlite:///path/mlflow.db`` -> ``sqlite:///path/optuna.db``), else
  ``optuna.db`` in the working directory. Never in memory: a study stopped by
  Ctrl-C must stay resumable. A new study refuses a name that exists
  ("pass --resume"); ``resume`` refuses one that does not; ``join`` creates
  the study when it is missing and joins it when it exists, so any number of
  workers can be started at the same moment with the same command. The
  study's user attrs hold its base config, its search space and its parent
  run id; a resumed or joined study must be given the same config and space
  (the first difference is named). Opening the storage is retried (5
  attempts, exponential back-off from 0.1 s) when several processes create
  Optuna's tables in an empty database at once.
* **Workers starting together** - every attr above is recorded with an
  atomic insert-if-absent on Optuna's ``study_user_attributes`` table (its
  ``UNIQUE(study_id, key)`` lets exactly one INSERT win on SQLite,
  PostgreSQL and MySQL; Optuna's own ``set_user_attr`` is an upsert, last
  write wins): the first worker to record the space and the base config
  defines them, the others are checked against them, and the worker that
  recorded the base config queues the baseline. A worker that finds no
  parent run opens a candidate parent, then tries to record it: the one
  recorded is the study's parent, every other candidate is tagged
  ``paramdoctor.tune.superseded_by=<parent>`` and deleted
  (``MlflowClient.delete_run``), and its worker joins the recorded parent.
  Exactly one parent run, whatever the timing or the clocks of the machines.
* **Parent run** - tags ``paramdoctor.kind=tune``, ``paramdoctor.study=NAME``,
  the sampler, pruner and storage (password hidden); ``config.yaml`` and
  ``paramdoctor/search_space.yaml`` at the start; at the end metrics
  ``tune/best_value``, ``tune/trials_{complete,pruned,failed}`` and
  ``importance/<key>``, artifacts ``paramdoctor/tune.json`` (the ``--json``
  object), ``paramdoctor/importance.json`` and ``best_config.yaml``. A resumed
  or joined study reopens the same parent run; processes sharing a study all
  write their trials under it.
* **Trial runs** - tags ``paramdoctor.kind=tune-trial``, ``paramdoctor.study``,
  ``paramdoctor.tune.trial=<number>``; a pruned trial's run ends FINISHED
  with stop reason ``pruned`` and tags ``paramdoctor.pruned_by`` (a rule code,
  ``optuna:median``, ``optuna:hyperband`` or ``nonfinite_loss``) and
  ``paramdoctor.pruned_reason``; a diverged one keeps fit's FAILED status and
  gets the same two tags.
* **Trials** - user attrs ``run_id``, ``source`` (``baseline``, ``doctor``,
  ``sampler``), ``epochs``, ``pruned_by`` / ``pruned_reason`` /
  ``pruned_epoch`` when pruned, ``doctor_check_ms`` (mean per epoch),
  ``failure`` when failed.

The first trial of a new study is the base config itself (its values moved
into the space), enqueued, whatever the sampler: the study never ends worse
than what it started from, and the doctor has a patient. Samplers: ``tpe``
(Optuna 5's default multivariate TPE), ``cmaes`` (needs the ``cmaes``
package; categoricals through TPE), ``gp``, ``nsga2``, ``random``, and
``doctor`` (:mod:`paramdoctor.experiments.doctor_sampler`: the best trial's
prescription next, TPE when the doctor has nothing new). Model-based
samplers start modelling after ``max(2, min(10, trials // 3))`` trials
instead of Optuna's fixed 10, so a budget of 12-16 trials is not mostly
random search. Pruners: ``median`` (``MedianPruner(n_startup_trials=3,
n_warmup_steps=2)``: from epoch 3, once 3 trials finished), ``hyperband``
(``HyperbandPruner(min_resource=1, max_resource=max_epochs,
reduction_factor=3)``) or ``none``. A trial fit marks FAILED for a
non-finite loss is PRUNED (by the doctor's finding, or ``nonfinite_loss``
with doctor pruning off), never a crash.

Importance: fANOVA (``optuna.importance.FanovaImportanceEvaluator``) over
the complete trials, from 3 of them on; fewer, or a study fANOVA cannot
model, gives no numbers and a sentence saying why.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from paramdoctor import keys
from paramdoctor.config import TrainConfig, dump_yaml, flatten, to_tree, validate
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.experiments.doctor_pruning import DoctorPruner, PruningListener
from paramdoctor.experiments.doctor_sampler import BASELINE, RUN_ID_ATTR, SAMPLER, SOURCE_ATTR, DoctorGuide
from paramdoctor.experiments.search_space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from paramdoctor.engine.schema import Rule

SAMPLERS = ("tpe", "cmaes", "gp", "nsga2", "random", "doctor")
PRUNERS = ("median", "hyperband", "none")
MIN_TRIALS_FOR_IMPORTANCE = 3
MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS = 3, 2
DEFAULT_OUT = "best_config.yaml"
OPTUNA_DB = "optuna.db"
STORAGE_ATTEMPTS = 5  # opening the storage: empty databases opened by several processes at once

TAG_KIND = "paramdoctor.kind"
KIND_TUNE, KIND_TRIAL = "tune", "tune-trial"
TAG_STUDY = "paramdoctor.study"
TAG_TRIAL = "paramdoctor.tune.trial"
TAG_SAMPLER, TAG_PRUNER, TAG_STORAGE = "paramdoctor.tune.sampler", "paramdoctor.tune.pruner", "paramdoctor.tune.storage"
TAG_DOCTOR_PRUNE = "paramdoctor.tune.doctor_prune"
TAG_SUPERSEDED = "paramdoctor.tune.superseded_by"  # a deleted candidate parent: the run that became the parent
ATTR_PARENT, ATTR_BASE, ATTR_SPACE = "mlflow_parent_run_id", "base_config", "search_space"


class TrialFailed(Exception):
    """A trial that produced no value (an invalid config, a run with no finite best): Optuna marks it FAIL."""


@dataclass
class TuneOptions:
    """How to run the study (the command's options)."""

    trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    doctor_prune: bool = True
    storage: str | None = None  # None: default_storage()
    study: str | None = None  # None: a new name
    resume: bool = False  # the study must exist
    join: bool = False  # create the study when missing, else join it (workers started together)
    out: str | Path | None = DEFAULT_OUT  # None: do not write the best config
    seed: int | None = None  # the sampler's seed; None: the config's seed


@dataclass
class TrialRow:
    """One trial as the report shows it (``to_dict`` is its ``--json`` shape)."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    source: str | None
    epochs: int | None = None
    duration_s: float | None = None
    pruned_by: str | None = None
    pruned_reason: str | None = None
    failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "state": self.state, "value": self.value, "params": dict(self.params),
                "run_id": self.run_id, "source": self.source, "epochs": self.epochs, "duration_s": self.duration_s,
                "pruned_by": self.pruned_by, "pruned_reason": self.pruned_reason, "failure": self.failure}


@dataclass
class TuneResult:
    study: str
    storage: str  # password hidden
    parent_run_id: str
    experiment: str
    metric: str
    direction: str  # maximize | minimize
    sampler: str
    pruner: str
    doctor_prune: bool
    space: dict[str, Any]
    trials: list[TrialRow] = field(default_factory=list)  # every trial of the study, all processes
    ran: list[int] = field(default_factory=list)  # the trial numbers this call ran
    best: TrialRow | None = None
    importance: dict[str, float] | None = None
    importance_note: str | None = None
    best_config_path: str | None = None
    doctor_check_ms: float | None = None  # mean time of one doctor check (one per epoch), this call's trials
    guide_notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(t.state for t in self.trials)
        return {s.lower(): c.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}

    @property
    def pruned_by(self) -> dict[str, int]:
        """How many trials each reason pruned (a rule code, optuna:median, ...)."""
        return dict(Counter(t.pruned_by or "unknown" for t in self.trials if t.state == "PRUNED").most_common())

    @property
    def exit_code(self) -> int:
        """0: the study has at least one complete trial; 1: none."""
        return 0 if self.best is not None else 1

    def top(self, n: int = 5) -> list[TrialRow]:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return sorted(done, key=lambda t: -t.value if self.direction == "maximize" else t.value)[:n]  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "study": self.study,
            "storage": self.storage,
            "parent_run_id": self.parent_run_id,
            "experiment": self.experiment,
            "metric": self.metric,
            "direction": self.direction,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "doctor_prune": self.doctor_prune,
            "space": self.space,
            "counts": self.counts,
            "pruned_by": self.pruned_by,
            "best": self.best.to_dict() if self.best else None,
            "importance": self.importance,
            "importance_note": self.importance_note,
            "best_config_path": self.best_config_path,
            "doctor_check_ms": self.doctor_check_ms,
            "guide_notes": list(self.guide_notes),
            "ran": list(self.ran),
            "trials": [t.to_dict() for t in self.trials],
        }


# --- storage, samplers, pruners -------------------------------------------------------------


def default_storage() -> str:
    """``optuna.db`` beside a local SQLite MLflow store, else in the working directory."""
    from paramdoctor.tracking.run import resolve_tracking_uri

    uri = resolve_tracking_uri()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            return f"sqlite:///{Path(path).parent / OPTUNA_DB}"
    return f"sqlite:///{OPTUNA_DB}"


def mask_url(url: str) -> str:
    """The storage URL with any password hidden (it goes into tags, JSON and the terminal)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: shown as given, minus anything like user:pass@
        head, sep, tail = url.partition("://")
        return f"{head}{sep}***@{tail.split('@', 1)[1]}" if "@" in tail else url


def startup_trials(trials: int) -> int:
    """Trials a model-based sampler samples at random before it models: ``max(2, min(10, trials // 3))``."""
    return max(2, min(10, trials // 3))


def make_sampler(name: str, *, seed: int | None, trials: int) -> "optuna.samplers.BaseSampler":
    import optuna

    startup = startup_trials(trials)
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name in ("tpe", "doctor"):
        return tpe
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401 - Optuna imports it lazily, at the first trial
        except ImportError:
            raise InputError("--sampler cmaes needs the cmaes package (pip install cmaes), or choose another --sampler") from None
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, independent_sampler=tpe,
                                            warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, independent_sampler=tpe,
                                         warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    raise InputError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, max_epochs: int) -> "optuna.pruners.BasePruner":
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 2), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise InputError(f"--pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def check_options(options: TuneOptions) -> None:
    """Everything about the options that can be refused before any store is opened."""
    if options.trials < 1:
        raise InputError(f"--trials must be at least 1, got {options.trials}")
    if options.sampler not in SAMPLERS:
        raise InputError(f"--sampler {options.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if options.pruner not in PRUNERS:
        raise InputError(f"--pruner {options.pruner!r}: choose one of {', '.join(PRUNERS)}")
    if options.resume and options.join:
        raise InputError("--resume and --join: choose one (--join also continues a study that exists)")
    if options.resume and not options.study:
        raise InputError("--resume needs --study NAME: the study to continue")
    if options.join and not options.study:
        raise InputError("--join needs --study NAME: the study every worker shares")
    if options.out is not None:
        parent = Path(options.out).resolve().parent
        if not parent.is_dir():
            raise InputError(f"--out {options.out}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise InputError(f"--out {options.out}: folder {parent} is not writable")
    if options.sampler == "cmaes":
        make_sampler("cmaes", seed=0, trials=options.trials)


def _open_storage(url: str, *, attempts: int = STORAGE_ATTEMPTS, first_delay_s: float = 0.1) -> "optuna.storages.RDBStorage":
    """Optuna's RDBStorage at ``url``, retried when processes opening an empty database at once collide.

    Each new ``RDBStorage`` creates Optuna's tables and stamps their schema
    version; two processes doing it together on an empty database fail with
    SQLAlchemy's ``IntegrityError`` (a version row or, on PostgreSQL, a type
    inserted twice), ``ProgrammingError`` ("type studydirection already
    exists") or ``OperationalError`` (SQLite: "table trials already exists",
    "database is locked"). The next attempt finds the tables made. Anything
    else (a bad URL, a missing driver) fails at once.
    """
    import random
    import time

    import optuna
    from sqlalchemy import exc as sa_exc

    transient = (sa_exc.IntegrityError, sa_exc.OperationalError, sa_exc.ProgrammingError,
                 optuna.exceptions.StorageInternalError)
    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except transient as exc:
            if attempt == attempts:
                raise InputError(f"--storage {mask_url(url)}: cannot open the Optuna storage after {attempts} attempts "
                                 f"({_first_line(exc)})") from None
            time.sleep(first_delay_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver
            raise InputError(f"--storage {mask_url(url)}: cannot open the Optuna storage ({_first_line(exc)})") from None
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text (for Optuna's StorageInternalError, of the SQL error behind it)."""
    if exc.__cause__ is not None and type(exc).__name__ == "StorageInternalError":
        exc = exc.__cause__
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _study_id(storage: "optuna.storages.BaseStorage", name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def _put_if_absent(storage: "optuna.storages.RDBStorage", study_id: int, key: str, value: Any) -> tuple[bool, Any]:
    """Record study user attr ``key`` = ``value`` unless it is recorded: (True, value) when this call wrote it,
    else (False, the recorded value).

    Atomic across processes and machines: one INSERT into Optuna's
    ``study_user_attributes`` table, whose ``UNIQUE(study_id, key)`` lets
    exactly one of any number of concurrent writers in (the others get
    ``IntegrityError``, on PostgreSQL once the winner commits). Optuna's
    ``set_study_user_attr`` cannot do this: it updates a row that exists and
    ignores the ``IntegrityError`` of a lost insert.
    """
    import sqlalchemy
    from optuna.storages._rdb.models import StudyUserAttributeModel

    table = StudyUserAttributeModel.__table__
    text = json.dumps(value)
    try:
        with storage.engine.begin() as conn:
            conn.execute(table.insert().values(study_id=study_id, key=key, value_json=text))
        return True, json.loads(text)
    except sqlalchemy.exc.IntegrityError:
        pass
    with storage.engine.connect() as conn:
        row = conn.execute(sqlalchemy.select(table.c.value_json).where(
            table.c.study_id == study_id, table.c.key == key)).first()
    if row is None:  # the INSERT failed for another reason (the study was deleted meanwhile)
        raise InputError(f"study id {study_id}: cannot record {key} (was the study deleted meanwhile?)")
    return False, json.loads(row[0])


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines and experimental warnings off: the command prints its own lines."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


# --- the study ------------------------------------------------------------------------------


def run_tune(
    base: TrainConfig,
    space: SearchSpace,
    options: TuneOptions,
    *,
    rules: Iterable["Rule"] | None = None,
    rule_params: Mapping[str, Mapping[str, Any]] | None = None,
    disable: Iterable[str] = (),
    on_start: Callable[[TuneResult], None] | None = None,
    on_trial: Callable[[TrialRow], None] | None = None,
) -> TuneResult:
    """Run ``options.trials`` trials of the study (see the module doc); the result covers the whole study.

    Ctrl-C (KeyboardInterrupt) ends the trial in flight (its run KILLED, the
    trial FAIL with ``failure`` = interrupted) and the parent run KILLED, and
    passes through: the study stays in its storage, resumable.
    """
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from paramdoctor.engine import load_rules

    check_options(options)
    rules = list(load_rules() if rules is None else rules)
    storage_url = options.storage or default_storage()
    shown_storage = mask_url(storage_url)
    flag = "--join" if options.join else "--resume"
    base_tree = to_tree(base)
    base_tree["experiment"]["run_name"] = None
    monitor, mode = base.early_stopping.monitor, base.early_stopping.mode
    direction = "maximize" if mode == "max" else "minimize"

    with _quiet_optuna():
        storage = _open_storage(storage_url)
        name = options.study or f"{base.data.dataset}-{base.model.name}-{secrets.token_hex(3)}"
        study_id = _study_id(storage, name)
        if options.resume and study_id is None:
            names = sorted(optuna.study.get_all_study_names(storage))
            known = f" (studies there: {', '.join(names[:10])})" if names else " (it holds no study)"
            raise InputError(f"--resume: no study {name!r} in {shown_storage}{known}; "
                             "--join creates it when it is missing")
        if study_id is not None and not (options.resume or options.join):
            raise InputError(f"study {name!r} already exists in {shown_storage}: pass --resume to continue it "
                             "(--join to share it between workers), or choose another --study")
        stored = storage.get_study_user_attrs(study_id) if study_id is not None else {}
        _same_as_stored(stored, base_tree, space, name, flag)  # before any run is opened
        max_epochs = int(space["trainer.max_epochs"].high) if "trainer.max_epochs" in space.keys else base.trainer.max_epochs
        pruner = make_pruner(options.pruner, max_epochs=max_epochs)
        seed: int | None = None

        def open_study() -> tuple["optuna.Study", int]:
            """Create the study or find it, load it with this worker's sampler, record and check its config."""
            nonlocal seed
            sid, created = study_id, False
            if sid is None:
                try:
                    sid = storage.create_new_study([StudyDirection[direction.upper()]], name)
                    created = True
                except optuna.exceptions.DuplicatedStudyError:
                    if not options.join:
                        raise InputError(f"study {name!r} was created in {shown_storage} meanwhile by another process: "
                                         "pass --join to share it") from None
                    sid = storage.get_study_id_from_name(name)
            seed = base.seed if options.seed is None else options.seed
            if options.seed is None and not created:
                # a worker joining a shared study: with the first worker's seed it would draw the very same params
                seed = base.seed + os.getpid()
            sampler = make_sampler(options.sampler, seed=seed, trials=options.trials)
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
            if study.direction != StudyDirection[direction.upper()]:
                raise InputError(f"{flag}: study {name!r} is {study.direction.name.lower()}d, this call's "
                                 f"{monitor} ({mode}) would be {direction}d")
            _record_setup(storage, study, sid, base, base_tree, space, name, flag)
            return study, sid

        tags = {TAG_KIND: KIND_TUNE, TAG_STUDY: name, TAG_SAMPLER: options.sampler, TAG_PRUNER: options.pruner,
                TAG_DOCTOR_PRUNE: str(options.doctor_prune).lower(), TAG_STORAGE: shown_storage,
                keys.TAG_MONITOR: monitor, keys.TAG_MODE: mode}
        new_parent = {
            "run_name": f"tune-{name}",
            "params": {"tune.study": name, "tune.direction": direction, "tune.metric": monitor,
                       "tune.space": ",".join(space.keys)},
            "artifacts_text": {"config.yaml": dump_yaml(base_tree), "paramdoctor/search_space.yaml": space.to_yaml()},
        }
        with _study_parent(storage, open_study, stored.get(ATTR_PARENT), experiment=base.experiment.name, tags=tags,
                           new_parent=new_parent) as (study, parent):
            result = TuneResult(
                study=name, storage=shown_storage, parent_run_id=parent.run_id, experiment=base.experiment.name,
                metric=monitor, direction=direction, sampler=options.sampler, pruner=options.pruner,
                doctor_prune=options.doctor_prune, space=space.to_dict(),
            )
            if on_start is not None:
                on_start(result)

            project_params = dict(rule_params or {})
            doctor = DoctorPruner(rules, project_params, disable) if options.doctor_prune else None
            guide = None
            if options.sampler == "doctor":
                guide = DoctorGuide(space, base, judge=_judge(rules, project_params, disable), read=_reader())
                guide.propose(study)
            check_ms: list[float] = []

            def objective(trial: "optuna.trial.Trial") -> float:
                return _run_trial(trial, base_tree, space, name, parent.run_id, monitor, mode, doctor,
                                  None if options.pruner == "none" else options.pruner, check_ms)

            def progress(study: "optuna.Study", frozen: "optuna.trial.FrozenTrial") -> None:
                result.ran.append(frozen.number)
                if on_trial is not None:
                    on_trial(trial_row(frozen))

            callbacks = ([guide] if guide is not None else []) + [progress]
            study.optimize(objective, n_trials=options.trials, catch=(TrialFailed,), callbacks=callbacks)

            trials = study.get_trials(deepcopy=False)
            result.trials = [trial_row(t) for t in trials]
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            result.best = trial_row(study.best_trial) if complete else None
            result.importance, result.importance_note = param_importance(study, seed=seed)
            result.doctor_check_ms = sum(check_ms) / len(check_ms) if check_ms else None
            result.guide_notes = list(guide.notes) if guide is not None else []
            if result.best is not None and options.out is not None:
                config = best_config(base_tree, space, result.best.params)
                result.best_config_path = str(write_config(config, options.out))
            _log_summary(parent, result, base_tree, space)
    return result


def _run_trial(
    trial: "optuna.trial.Trial",
    base_tree: dict[str, Any],
    space: SearchSpace,
    study_name: str,
    parent_id: str,
    monitor: str,
    mode: str,
    doctor: DoctorPruner | None,
    optuna_pruner: str | None,
    check_ms: list[float],
) -> float:
    """One trial: params, config, fit with the pruning listener, the verdict as Optuna needs it."""
    import optuna

    from paramdoctor.hooks import MemorySink
    from paramdoctor.training import fit
    from paramdoctor.training.fit import STOP_NONFINITE

    if SOURCE_ATTR not in trial.user_attrs:
        trial.set_user_attr(SOURCE_ATTR, SAMPLER)
    params = space.suggest(trial)
    tree = {**base_tree, "experiment": {**base_tree["experiment"], "run_name": f"{study_name}-trial{trial.number}"}}
    try:
        config = space.config_for(tree, params, where=f"trial {trial.number}")
    except ConfigError as exc:
        trial.set_user_attr("failure", str(exc))
        raise TrialFailed(str(exc)) from None
    sink = MemorySink()
    listener = PruningListener(trial, sink, to_tree(config), monitor=monitor, mode=mode, doctor=doctor,
                               optuna_pruner=optuna_pruner, experiment=config.experiment.name)
    tags = {TAG_KIND: KIND_TRIAL, TAG_STUDY: study_name, TAG_TRIAL: str(trial.number)}
    try:
        fitted = fit(config, listener=listener, parent_run_id=parent_id, extra_tags=tags, metric_tap=sink)
    except KeyboardInterrupt:
        trial.set_user_attr("failure", "interrupted (Ctrl-C or SIGTERM): the run is KILLED, the study resumable")
        raise
    finally:
        if listener.check_ms is not None:
            trial.set_user_attr("doctor_check_ms", listener.check_ms)
            check_ms.extend(1000 * s for s in listener.check_seconds)
    trial.set_user_attr(RUN_ID_ATTR, fitted.run_id)
    trial.set_user_attr("epochs", fitted.epochs_run)

    pruned = listener.pruned
    if fitted.status == "FAILED" and fitted.stop_reason == STOP_NONFINITE:
        pruned = listener.diverged(fitted.failure)
        _tag_run(fitted.run_id, fitted.tracking_uri, pruned.tags())
    if pruned is not None:
        trial.set_user_attr("pruned_by", pruned.by)
        trial.set_user_attr("pruned_reason", pruned.reason)
        if pruned.epoch is not None:
            trial.set_user_attr("pruned_epoch", pruned.epoch)
        raise optuna.TrialPruned(f"{pruned.by}: {pruned.reason}")
    best = fitted.best_value
    if fitted.status != "FINISHED" or best is None or not math.isfinite(best):
        why = fitted.failure or f"the run ended {fitted.status} with no finite {monitor}"
        trial.set_user_attr("failure", why)
        raise TrialFailed(why)
    return float(best)


def _tag_run(run_id: str, tracking_uri: str | None, tags: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    from paramdoctor.tracking.values import one_line

    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, one_line(value, 4000))


def _judge(rules: list["Rule"], params: Mapping[str, Any], disable: Iterable[str]) -> Callable:
    from paramdoctor.engine import diagnose

    frozen = tuple(disable)

    def judge(record):
        return diagnose(record, rules, params, disable=frozen)

    return judge


def _reader() -> Callable:
    from paramdoctor.sources.mlflow_source import open_client, record_from_mlflow

    client = None

    def read(run_id: str):
        nonlocal client
        client = client or open_client()
        return record_from_mlflow(run_id, client)

    return read


@contextmanager
def _study_parent(
    storage: "optuna.storages.RDBStorage",
    open_study: Callable[[], tuple["optuna.Study", int]],
    parent_id: str | None,
    *,
    experiment: str,
    tags: Mapping[str, str],
    new_parent: Mapping[str, Any],
) -> Iterator[tuple["optuna.Study", Any]]:
    """The study (``open_study()``) and its one parent run, opened for this worker; the run ends with the block.

    A recorded parent is reopened. Without one, this worker opens a candidate
    parent (tags ``tags``, run name, params and artifacts ``new_parent``)
    before it creates or loads the study, then records the candidate with
    :func:`_put_if_absent`: recorded, the candidate is the parent; beaten by
    another worker's candidate, it is tagged ``paramdoctor.tune.superseded_by``,
    ended, deleted, and the recorded parent reopened. A candidate that never
    got as far (the study refused) is deleted too: no stray parent stays.
    """
    from paramdoctor.tracking import start_run

    if parent_id is not None:
        study, _ = open_study()
        with start_run(experiment=experiment, tags=tags, resume_run_id=parent_id) as parent:
            yield study, parent
        return
    discard: tuple[str, str | None] | None = None  # (candidate run id, tracking URI) to delete
    winner: str | None = None
    try:
        with start_run(experiment=experiment, tags=tags, **new_parent) as candidate:
            discard = (candidate.run_id, candidate.tracking_uri)
            study, study_id = open_study()
            won, winner = _put_if_absent(storage, study_id, ATTR_PARENT, candidate.run_id)
            if won:
                discard = None
                yield study, candidate
                return
            candidate.set_tags({TAG_SUPERSEDED: winner})
    finally:
        if discard is not None:
            _delete_run(*discard)
    with start_run(experiment=experiment, tags=tags, resume_run_id=winner) as parent:
        yield study, parent


def _delete_run(run_id: str, tracking_uri: str | None) -> None:
    """Delete a candidate parent that did not become the parent (a warning if the store refuses)."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=tracking_uri).delete_run(run_id)
    except Exception as exc:  # noqa: BLE001 - a run left behind is untidy, not a reason to stop the study
        warnings.warn(f"could not delete candidate parent run {run_id}: {_first_line(exc)}", stacklevel=2)


def _record_setup(
    storage: "optuna.storages.RDBStorage",
    study: "optuna.Study",
    study_id: int,
    base: TrainConfig,
    base_tree: dict[str, Any],
    space: SearchSpace,
    name: str,
    flag: str,
) -> None:
    """Record the study's space and base config unless recorded (the first worker's stand), check this call's
    against them, and queue the baseline as the first trial when this call recorded the base config of a
    study with no trials yet (so it is queued once, whatever number of workers start together)."""
    stored: dict[str, Any] = {}
    _, stored[ATTR_SPACE] = _put_if_absent(storage, study_id, ATTR_SPACE, space.to_dict())
    won, stored[ATTR_BASE] = _put_if_absent(storage, study_id, ATTR_BASE, base_tree)
    _same_as_stored(stored, base_tree, space, name, flag)
    if won and not study.get_trials(deepcopy=False):
        study.enqueue_trial(space.params_of(base), user_attrs={SOURCE_ATTR: BASELINE})


def _same_as_stored(stored: Mapping[str, Any], base_tree: dict[str, Any], space: SearchSpace, name: str,
                    flag: str = "--resume") -> None:
    """A resumed or joined study must run the config and space it started with; name the first difference."""
    verb = flag.lstrip("-")
    stored_base, stored_space = stored.get(ATTR_BASE), stored.get(ATTR_SPACE)
    if stored_base is not None:
        old, new = flatten(stored_base), flatten(base_tree)
        for key in sorted(set(old) | set(new)):
            if key != "experiment.run_name" and _norm(old.get(key)) != _norm(new.get(key)):
                raise InputError(
                    f"{flag}: study {name!r} was started with {key}={old.get(key)!r}, this call gives {new.get(key)!r}; "
                    f"{verb} with the same CONFIG and overrides"
                )
    if stored_space is not None and _norm(stored_space) != _norm(space.to_dict()):
        diff = sorted(set(stored_space) ^ set(space.to_dict())) or sorted(
            k for k in stored_space if _norm(stored_space[k]) != _norm(space.to_dict().get(k)))
        raise InputError(f"{flag}: study {name!r} searches a different space (first difference: {diff[0]}); "
                         f"{verb} with the same --space file (or none)")


def _norm(value: Any) -> Any:
    """JSON round trip: tuples become lists, as Optuna's storage returns them."""
    return json.loads(json.dumps(value))


# --- reading the study back -------------------------------------------------------------


def trial_row(t: "optuna.trial.FrozenTrial") -> TrialRow:
    attrs = t.user_attrs
    duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    value = t.value if t.state.name == "COMPLETE" else None
    return TrialRow(
        number=t.number, state=t.state.name, value=value,
        params=dict(t.params or t.system_attrs.get("fixed_params", {})), run_id=attrs.get(RUN_ID_ATTR),
        source=attrs.get(SOURCE_ATTR), epochs=attrs.get("epochs"), duration_s=duration,
        pruned_by=attrs.get("pruned_by"), pruned_reason=attrs.get("pruned_reason"), failure=attrs.get("failure"),
    )


def param_importance(study: "optuna.Study", *, seed: int | None = None) -> tuple[dict[str, float] | None, str | None]:
    """fANOVA importance of each searched key over the complete trials, or None and why not."""
    import optuna
    from optuna.trial import TrialState

    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials; the study has {n}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return None, f"fANOVA could not model the study ({str(exc).splitlines()[0][:200]})"
    values = {k: float(v) for k, v in values.items()}
    if not values or not all(math.isfinite(v) for v in values.values()):
        return None, f"fANOVA found no variation to attribute over {n} complete trials (every value the same?)"
    return values, None


def best_config(base_tree: dict[str, Any], space: SearchSpace, params: dict[str, Any]) -> TrainConfig:
    """The base config with the best trial's params: what ``paramdoctor train`` should run next."""
    config = space.config_for(base_tree, params, where="the best trial's config")
    tree = to_tree(config)
    tree["experiment"]["run_name"] = None
    return validate(tree, where="the best trial's config")


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML atomically (a temporary file beside it, flushed, renamed over)."""
    from paramdoctor.config import load_config

    path = Path(path)
    text = dump_yaml(config, annotate=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        load_config(tmp)  # what train will read: it must load as is
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _log_summary(parent: Any, result: TuneResult, base_tree: dict[str, Any], space: SearchSpace) -> None:
    from paramdoctor.report import jsonable

    counts = result.counts
    step = len(result.trials)
    metrics = {"tune/trials_complete": counts["complete"], "tune/trials_pruned": counts["pruned"],
               "tune/trials_failed": counts["fail"]}
    if result.best is not None and result.best.value is not None:
        metrics["tune/best_value"] = result.best.value
    for key, value in (result.importance or {}).items():
        metrics[f"importance/{key}"] = value
    parent.log_metrics({k: float(v) for k, v in metrics.items()}, step)
    if result.best is not None:
        parent.set_tags({"paramdoctor.tune.best_trial": str(result.best.number),
                         "paramdoctor.tune.best_run_id": result.best.run_id or ""})
        parent.log_text(dump_yaml(best_config(base_tree, space, result.best.params)), "best_config.yaml")
    payload = jsonable(result.to_dict())
    parent.log_text(json.dumps(payload, indent=2, allow_nan=False), "paramdoctor/tune.json")
    parent.log_text(json.dumps({"evaluator": "fanova", "values": jsonable(result.importance),
                                "note": result.importance_note}, indent=2, allow_nan=False), "paramdoctor/importance.json")

