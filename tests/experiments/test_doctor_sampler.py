"""The doctor guide enqueues the best trial's prescription, and steps aside when it has nothing new."""

from __future__ import annotations


import optuna
import pytest

from paramdoctor.config import load_config, validate
from paramdoctor.diagnosis import Diagnosis
from paramdoctor.engine import diagnose, load_rules
from paramdoctor.experiments.doctor_sampler import DOCTOR, SOURCE_ATTR, DoctorGuide
from paramdoctor.experiments.search_space import RATIO_KEY, default_space
from paramdoctor.sources import record_from_mlflow
from paramdoctor.training import fit

# three epochs on 192 samples: still improving at the end (PD203), whose prescription doubles the LR and the epochs
BASE = ["data.subset=192", "data.batch_size=16", "trainer.max_epochs=3", "trainer.telemetry_every_n_steps=2",
        "experiment.name=guide"]


@pytest.fixture(scope="module")
def studied(module_store):
    """An in-memory study whose one complete trial is the base config, trained for real."""
    base = load_config(None, BASE)
    space = default_space(base)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.params_of(base))
    trial = study.ask()
    params = space.suggest(trial)
    result = fit(space.config_for(base, params))
    trial.set_user_attr("run_id", result.run_id)
    study.tell(trial, result.best_value)
    return base, space, study, result


def _judge(record):
    return diagnose(record, load_rules())


def _read(run_id):
    return record_from_mlflow(run_id)


def test_the_guide_enqueues_the_prescription_of_the_best_trial(studied):
    base, space, study, result = studied
    guide = DoctorGuide(space, base, judge=_judge, read=_read)
    diagnosis = _judge(_read(result.run_id))
    assert diagnosis.status == "findings" and diagnosis.prescription.changes

    proposal = guide.propose(study)
    assert proposal is not None and proposal.from_trial == 0
    assert proposal.findings == [f.code for f in diagnosis.findings]
    expected = space.params_of(validate(diagnosis.prescription.next_config))
    if "optimizer.backbone_lr" not in diagnosis.prescription.patch:  # "lr x2" moves the whole network's step
        expected[RATIO_KEY] = study.trials[0].params[RATIO_KEY]
    assert proposal.params == expected
    assert proposal.changes and all(k in space.keys for k in proposal.changes)
    assert all(old == study.trials[0].params[k] and new == proposal.params[k] for k, (old, new) in proposal.changes.items())
    patch = diagnosis.prescription.patch
    assert {k for k in patch if k not in space.keys and k != "optimizer.backbone_lr"} == set(proposal.outside)

    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == proposal.params
    assert waiting[0].user_attrs[SOURCE_ATTR] == DOCTOR and waiting[0].user_attrs["doctor.from_trial"] == 0
    assert guide.propose(study) is None  # something is queued already: nothing twice
    assert guide.enqueued == 1 and "enqueued trial 0's prescription" in guide.notes[-1]

    # the next trial runs the prescription; told a worse value, trial 0 stays best and its advice was tried
    trial = study.ask()
    assert space.suggest(trial) == proposal.params
    study.tell(trial, 0.0)
    assert guide.propose(study) is None and "already tried" in guide.notes[-1]
    assert study.ask().user_attrs.get(SOURCE_ATTR) is None  # the sampler's turn


def test_a_healthy_best_trial_hands_the_next_trial_to_the_sampler(studied):
    base, space, _, result = studied
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(space.params_of(base))
    trial = study.ask()
    space.suggest(trial)
    trial.set_user_attr("run_id", result.run_id)
    study.tell(trial, 0.9)
    guide = DoctorGuide(space, base, judge=lambda record: Diagnosis(run_id=record.run_id, run_name=None), read=_read)
    assert guide.propose(study) is None and "is healthy" in guide.notes[-1]
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.WAITING]


def test_a_study_without_a_complete_trial_gets_no_proposal(studied):
    base, space, _, _ = studied
    study = optuna.create_study(direction="maximize")
    guide = DoctorGuide(space, base, judge=_judge, read=_read)
    assert guide.propose(study) is None and guide.notes == []
