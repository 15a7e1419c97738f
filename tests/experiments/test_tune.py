"""Tune on real tiny trainings: children of one parent, resume in SQLite, the best config, refusals, importance,
and workers started at the same moment (--join) in real processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from paramdoctor.config import load_config
from paramdoctor.errors import InputError
from paramdoctor.experiments.search_space import RATIO_KEY, default_space
from paramdoctor.experiments.tune import (
    ATTR_BASE,
    ATTR_PARENT,
    ATTR_SPACE,
    KIND_TRIAL,
    KIND_TUNE,
    TAG_KIND,
    TAG_STUDY,
    TAG_SUPERSEDED,
    TAG_TRIAL,
    TuneOptions,
    default_storage,
    mask_url,
    param_importance,
    run_tune,
    startup_trials,
)

TINY = ["data.subset=192", "data.batch_size=16", "trainer.max_epochs=3", "trainer.telemetry_every_n_steps=2"]
QUICK = ["data.subset=64", "data.batch_size=32", "trainer.max_epochs=1"]  # one epoch of two batches
REPO = Path(__file__).resolve().parents[2]


def _runs(uri):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("paramdoctor")
    return client, client.search_runs([exp.experiment_id])


def test_a_three_trial_study_trains_children_of_one_parent_and_writes_the_best_config(migrated_store_uri, tmp_path):
    base = load_config(None, TINY)
    space = default_space(base)
    seen = []
    result = run_tune(base, space, TuneOptions(trials=3, sampler="random"), on_trial=seen.append)

    assert [r.number for r in seen] == [0, 1, 2] == result.ran
    assert len(result.trials) == 3 and result.trials[0].source == "baseline"
    assert result.trials[0].params == space.params_of(base) and result.trials[0].state == "COMPLETE"
    assert {t.source for t in result.trials[1:]} == {"sampler"}
    assert all(t.state in ("COMPLETE", "PRUNED") and t.run_id for t in result.trials)
    assert result.exit_code == 0 and result.best is not None
    assert result.best.value == max(t.value for t in result.trials if t.state == "COMPLETE")
    assert result.storage == default_storage() == f"sqlite:///{tmp_path}/optuna.db"  # beside mlflow.db
    assert (tmp_path / "optuna.db").exists()

    client, runs = _runs(migrated_store_uri)
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == KIND_TUNE]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_id == result.parent_run_id and parent.info.status == "FINISHED"
    assert parent.data.tags[TAG_STUDY] == result.study and parent.data.params["tune.metric"] == "val/acc"
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == KIND_TRIAL]
    assert len(children) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    by_trial = {int(r.data.tags[TAG_TRIAL]): r for r in children}
    assert {n: r.info.run_id for n, r in by_trial.items()} == {t.number: t.run_id for t in result.trials}
    assert float(by_trial[1].data.params["optimizer.lr"]) == pytest.approx(result.trials[1].params["optimizer.lr"])

    assert parent.data.metrics["tune/trials_complete"] == result.counts["complete"]
    assert parent.data.metrics["tune/best_value"] == pytest.approx(result.best.value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | {
        a.path for a in client.list_artifacts(parent.info.run_id, "paramdoctor")}
    assert {"config.yaml", "best_config.yaml", "paramdoctor/tune.json", "paramdoctor/importance.json",
            "paramdoctor/search_space.yaml"} <= artifacts
    logged = json.loads(open(client.download_artifacts(parent.info.run_id, "paramdoctor/tune.json", str(tmp_path))).read())
    assert logged["study"] == result.study and len(logged["trials"]) == 3

    # the best config is what paramdoctor train reads, and it is the best trial's params on the base
    written = load_config(tmp_path / "best_config.yaml")
    assert result.best_config_path == "best_config.yaml"
    assert written == space.config_for(base, result.best.params).model_copy(
        update={"experiment": base.experiment.model_copy(update={"run_name": None})})
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.user_attrs[ATTR_PARENT] == parent.info.run_id
    assert [t.user_attrs["run_id"] for t in study.trials] == [t.run_id for t in result.trials]


def test_resume_continues_a_study_in_sqlite_under_the_same_parent(migrated_store_uri, tmp_path):
    base = load_config(None, TINY)
    space = default_space(base)
    storage = f"sqlite:///{tmp_path}/studies.db"
    first = run_tune(base, space, TuneOptions(trials=1, storage=storage, study="s1", out=None))
    assert first.ran == [0] and first.best_config_path is None and not (tmp_path / "best_config.yaml").exists()

    with pytest.raises(InputError, match="already exists .* pass --resume"):
        run_tune(base, space, TuneOptions(trials=1, storage=storage, study="s1"))
    other = load_config(None, [*TINY, "optimizer.lr=0.01"])
    with pytest.raises(InputError, match="started with optimizer.lr=0.001, this call gives 0.01"):
        run_tune(other, space, TuneOptions(trials=1, storage=storage, study="s1", resume=True))

    again = run_tune(base, space, TuneOptions(trials=2, storage=storage, study="s1", resume=True, sampler="tpe"))
    assert again.ran == [1, 2] and [t.number for t in again.trials] == [0, 1, 2]
    assert [t.source for t in again.trials] == ["baseline", "sampler", "sampler"]  # the baseline ran once
    assert again.parent_run_id == first.parent_run_id
    _, runs = _runs(migrated_store_uri)
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == KIND_TRIAL]
    assert len(children) == 3 and {r.data.tags["mlflow.parentRunId"] for r in children} == {first.parent_run_id}
    assert len([r for r in runs if r.data.tags.get(TAG_KIND) == KIND_TUNE]) == 1


def test_join_creates_a_missing_study_then_joins_it_and_refuses_another_config(migrated_store_uri, tmp_path):
    base = load_config(None, QUICK)
    space = default_space(base)
    storage = f"sqlite:///{tmp_path}/studies.db"
    quick = {"storage": storage, "study": "j", "out": None, "sampler": "random", "pruner": "none", "doctor_prune": False}
    first = run_tune(base, space, TuneOptions(trials=1, join=True, **quick))
    assert first.ran == [0] and first.trials[0].source == "baseline"
    again = run_tune(base, space, TuneOptions(trials=1, join=True, **quick))
    assert again.ran == [1] and again.parent_run_id == first.parent_run_id
    assert [t.source for t in again.trials] == ["baseline", "sampler"]  # the baseline is queued once

    other = load_config(None, [*QUICK, "optimizer.lr=0.01"])
    with pytest.raises(InputError, match="--join: study 'j' was started with optimizer.lr=0.001, this call gives 0.01; "
                                         "join with the same CONFIG"):
        run_tune(other, space, TuneOptions(trials=1, join=True, **quick))
    with pytest.raises(InputError, match=r"already exists .* pass --resume to continue it \(--join to share it"):
        run_tune(base, space, TuneOptions(trials=1, **quick))
    with pytest.raises(InputError, match="--resume and --join: choose one"):
        run_tune(base, space, TuneOptions(trials=1, join=True, resume=True, **quick))
    with pytest.raises(InputError, match="--join needs --study NAME"):
        run_tune(base, space, TuneOptions(trials=1, join=True))
    client, runs = _runs(migrated_store_uri)
    assert [r.info.run_id for r in runs if r.data.tags.get(TAG_KIND) == KIND_TUNE] == [first.parent_run_id]
    assert not client.search_runs([runs[0].info.experiment_id], run_view_type=ViewType.DELETED_ONLY)


def test_resume_of_a_study_whose_first_worker_stopped_before_naming_a_parent_makes_one(migrated_store_uri, tmp_path):
    # a worker stopped between creating the study and recording its parent run: no parent attr, no config attrs
    base = load_config(None, QUICK)
    space = default_space(base)
    storage = f"sqlite:///{tmp_path}/studies.db"
    optuna.create_study(storage=storage, study_name="half", direction="maximize")
    result = run_tune(base, space, TuneOptions(trials=1, storage=storage, study="half", resume=True, out=None,
                                               sampler="random", pruner="none", doctor_prune=False))
    study = optuna.load_study(study_name="half", storage=storage)
    assert study.user_attrs[ATTR_PARENT] == result.parent_run_id  # recorded: the next worker joins it
    assert study.user_attrs[ATTR_SPACE] == json.loads(json.dumps(space.to_dict())) and ATTR_BASE in study.user_attrs
    assert result.trials[0].source == "baseline"  # its first trial, queued by the worker that recorded the config
    _, runs = _runs(migrated_store_uri)
    assert [r.info.run_id for r in runs if r.data.tags.get(TAG_KIND) == KIND_TUNE] == [result.parent_run_id]


@pytest.mark.slow  # real processes: each imports its own Python stack
def test_opening_an_empty_storage_from_many_processes_at_once_retries_until_the_tables_exist(tmp_path):
    # Each new RDBStorage creates Optuna's tables and stamps their version: processes doing it together on an
    # empty database collide ("table trials already exists", "UNIQUE constraint failed: alembic_version...").
    url = f"sqlite:///{tmp_path}/empty.db"
    script = (
        "import os, sys, time\n"
        "from paramdoctor.experiments.tune import _open_storage\n"
        "import optuna, sqlalchemy\n"
        "open(sys.argv[2] + '.ready', 'w').close()\n"
        "while not os.path.exists(sys.argv[3]):\n"
        "    time.sleep(0.001)\n"
        "_open_storage(sys.argv[1])\n"
        "print('opened')\n"
    )
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", script, url, str(tmp_path / f"w{i}"), str(go)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    try:
        _barrier([tmp_path / f"w{i}.ready" for i in range(6)], workers, go)
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [(w.returncode, out.strip()) for w, (out, _) in zip(workers, outputs)] == [(0, "opened")] * 6, outputs
    storage = optuna.storages.RDBStorage(url)  # one schema, stamped once
    with storage.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM version_info")).scalar() == 1


def test_storage_that_cannot_be_opened_is_one_line_after_the_retries(tmp_path):
    from paramdoctor.experiments.tune import _open_storage

    start = time.monotonic()
    with pytest.raises(InputError, match=r"^--storage sqlite:///.*/missing/x.db: cannot open the Optuna storage after "
                                         r"3 attempts \(\(sqlite3.OperationalError\) unable to open database file\)$"):
        _open_storage(f"sqlite:///{tmp_path}/missing/x.db", attempts=3, first_delay_s=0.01)
    assert time.monotonic() - start < 5
    with pytest.raises(InputError, match=r"^--storage nosuchdb://x: cannot open the Optuna storage \(Can't load plugin"):
        _open_storage("nosuchdb://x")  # not a collision: no retry


def _barrier(ready: list[Path], workers: list[subprocess.Popen], go: Path, timeout_s: float = 180) -> None:
    """Release every worker at once: when all have written their ready file, create ``go``."""
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in ready):
        dead = [w for w in workers if w.poll() is not None]
        if dead:
            pytest.fail(f"a worker exited {dead[0].returncode} before the start: {dead[0].communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"workers not ready within {timeout_s:.0f} s")
        time.sleep(0.02)
    go.touch()


@pytest.mark.slow  # real processes: each imports its own Python stack
def test_workers_started_at_the_same_moment_with_join_share_one_study_one_parent_and_no_trial_twice(
    migrated_store_uri, tmp_path
):
    """Two `paramdoctor tune --join` processes both open a candidate parent run before either can write to the
    study's storage (the test holds SQLite's write lock until both candidates exist): the race on the parent
    happens every time, not by luck of timing. Exactly one parent survives; the other is deleted."""
    db = tmp_path / "optuna.db"
    url = f"sqlite:///{db}?timeout=300"  # a worker waits for the write lock rather than failing
    optuna.storages.RDBStorage(url).engine.dispose()  # the tables: workers then only read until the lock goes
    env = {**os.environ, "MLFLOW_TRACKING_URI": migrated_store_uri, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    trials, study_name = 2, "together"

    def worker(n: int) -> subprocess.Popen:
        argv = [sys.executable, "-m", "paramdoctor", "tune", *QUICK, "--trials", str(trials), "--storage", url,
                "--study", study_name, "--join", "--sampler", "random", "--pruner", "none", "--no-doctor-prune",
                "--out", f"best{n}.yaml", "--json"]
        return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    client = MlflowClient(migrated_store_uri)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # readers go on, every writer waits
    workers = [worker(1), worker(2)]
    try:
        deadline = time.monotonic() + 240
        while True:
            candidates = client.search_runs([client.get_experiment_by_name("paramdoctor").experiment_id],
                                            f"tags.`{TAG_KIND}` = '{KIND_TUNE}'") \
                if client.get_experiment_by_name("paramdoctor") else []
            if len(candidates) == 2:
                break
            dead = [w for w in workers if w.poll() is not None]
            if dead or time.monotonic() > deadline:
                lock.execute("ROLLBACK")
                pytest.fail(f"workers did not both open a candidate parent: {[w.communicate()[1][-2000:] for w in dead]}")
            time.sleep(0.1)
        lock.execute("ROLLBACK")  # both hold a candidate parent; the study does not exist yet
        lock.close()
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    first, second = (json.loads(out) for out, _ in outputs)  # stdout is the one JSON object

    parent_id = first["parent_run_id"]
    assert second["parent_run_id"] == parent_id
    assert sorted(first["ran"] + second["ran"]) == list(range(2 * trials))  # no trial run twice, none lost
    study = optuna.load_study(study_name=study_name, storage=url)
    assert optuna.study.get_all_study_names(url) == [study_name]
    assert study.user_attrs[ATTR_PARENT] == parent_id
    frozen = study.get_trials(deepcopy=False)
    assert [t.number for t in frozen] == list(range(2 * trials)) and {t.state.name for t in frozen} == {"COMPLETE"}
    assert [t.user_attrs["source"] for t in frozen].count("baseline") == 1

    exp = client.get_experiment_by_name("paramdoctor").experiment_id
    active = client.search_runs([exp])
    assert [r.info.run_id for r in active if r.data.tags.get(TAG_KIND) == KIND_TUNE] == [parent_id]
    children = [r for r in active if r.data.tags.get(TAG_KIND) == KIND_TRIAL]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}
    assert sorted(r.info.run_id for r in children) == sorted(t.user_attrs["run_id"] for t in frozen)
    assert {r.info.run_id: int(r.data.tags[TAG_TRIAL]) for r in children} == {
        t.user_attrs["run_id"]: t.number for t in frozen}
    [loser] = client.search_runs([exp], run_view_type=ViewType.DELETED_ONLY)  # the other candidate, deleted
    assert loser.data.tags[TAG_KIND] == KIND_TUNE and loser.data.tags[TAG_SUPERSEDED] == parent_id
    assert loser.info.status == "FINISHED"


def test_the_doctor_sampler_runs_the_baselines_prescription_next(migrated_store_uri):
    base = load_config(None, TINY)  # still improving after 3 epochs: PD203 doubles the LR
    result = run_tune(base, default_space(base), TuneOptions(trials=2, sampler="doctor", out=None))
    second = result.trials[1]
    assert second.source == "doctor"
    assert second.params["optimizer.lr"] == pytest.approx(2 * result.trials[0].params["optimizer.lr"])
    assert second.params[RATIO_KEY] == result.trials[0].params[RATIO_KEY]  # the backbone keeps its share of the step
    assert any("enqueued trial 0's prescription" in note for note in result.guide_notes)
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert study.trials[1].user_attrs["doctor.from_trial"] == 0 and "PD203" in study.trials[1].user_attrs["doctor.findings"]


def test_refusals_come_before_any_store_is_touched(tracking_uri, tmp_path):
    base = load_config(None, TINY)
    space = default_space(base)
    with pytest.raises(InputError, match="--resume needs --study"):
        run_tune(base, space, TuneOptions(trials=1, resume=True))
    with pytest.raises(InputError, match="--sampler 'bayes': choose one of tpe, cmaes, gp, nsga2, random, doctor"):
        run_tune(base, space, TuneOptions(trials=1, sampler="bayes"))
    with pytest.raises(InputError, match="--out .*does not exist"):
        run_tune(base, space, TuneOptions(trials=1, out=tmp_path / "missing" / "best.yaml"))
    storage = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(InputError, match="--resume: no study 'nope'"):
        run_tune(base, space, TuneOptions(trials=1, storage=storage, study="nope", resume=True))
    assert not (tmp_path / "mlflow.db").exists()


def test_importance_needs_three_complete_trials_and_then_ranks_the_key_that_matters():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + 0.01 * t.suggest_float("y", -1, 1), n_trials=2)
    values, note = param_importance(study, seed=0)
    assert values is None and note == "fANOVA needs at least 3 complete trials; the study has 2"
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + 0.01 * t.suggest_float("y", -1, 1), n_trials=28)
    values, note = param_importance(study, seed=0)
    assert note is None and list(values) == ["x", "y"] and values["x"] > 0.8
    assert sum(values.values()) == pytest.approx(1.0)


def test_small_budgets_model_early_and_passwords_never_show():
    assert [startup_trials(n) for n in (3, 12, 16, 60)] == [2, 4, 5, 10]
    assert mask_url("postgresql://tuner:s3cret@db:5432/optuna") == "postgresql://tuner:***@db:5432/optuna"
    assert mask_url("sqlite:///tune.db") == "sqlite:///tune.db"


@pytest.mark.parametrize("name", ["tpe", "cmaes", "gp", "nsga2", "random", "doctor"])
def test_every_sampler_samples_the_default_space_past_its_startup(name):
    from paramdoctor.experiments.tune import make_pruner, make_sampler

    base = load_config(None, TINY)
    space = default_space(base)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed=0, trials=6),
                                pruner=make_pruner("hyperband", max_epochs=3))
    study.enqueue_trial(space.params_of(base))

    def objective(trial):
        config = space.config_for(base, space.suggest(trial))  # every sample is a valid config
        return -abs(config.optimizer.lr - 3e-3) - config.model.dropout

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=6)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert len({t.params["optimizer.lr"] for t in study.trials}) > 1
