"""Tune on real tiny trainings: children of one parent, resume in SQLite, the best config, refusals, importance."""

from __future__ import annotations

import json
import warnings

import optuna
import pytest
from mlflow import MlflowClient

from paramdoctor.config import load_config
from paramdoctor.errors import InputError
from paramdoctor.experiments.search_space import RATIO_KEY, default_space
from paramdoctor.experiments.tune import (
    ATTR_PARENT,
    KIND_TRIAL,
    KIND_TUNE,
    TAG_KIND,
    TAG_STUDY,
    TAG_TRIAL,
    TuneOptions,
    default_storage,
    mask_url,
    param_importance,
    run_tune,
    startup_trials,
)

TINY = ["data.subset=192", "data.batch_size=16", "trainer.max_epochs=3", "trainer.telemetry_every_n_steps=2"]


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
