"""Doctor pruning on real trainings: a diverging or dead trial is stopped with the finding, a healthy one is not."""

from __future__ import annotations


import pytest

from paramdoctor import keys
from paramdoctor.config import load_config, to_tree
from paramdoctor.engine import load_rules
from paramdoctor.experiments.doctor_pruning import (
    EPOCHS_AT_PEAK_LR,
    TAG_PRUNED_BY,
    DoctorPruner,
    PruningListener,
    is_severe,
    pruning_rules,
)
from paramdoctor.hooks import MemorySink
from paramdoctor.training import fit

TINY = ["data.subset=256", "data.batch_size=16", "trainer.telemetry_every_n_steps=2", "experiment.name=prune"]


@pytest.fixture(scope="module")
def doctor():
    return DoctorPruner(load_rules())


def _train(overrides, doctor):
    config = load_config(None, [*TINY, *overrides])
    sink = MemorySink()
    listener = PruningListener(None, sink, to_tree(config), doctor=doctor)
    result = fit(config, listener=listener, metric_tap=sink)
    if result.status == "FAILED":
        listener.diverged(result.failure)
    return result, listener


def test_the_pruning_set_is_read_from_severity_and_category():
    rules = load_rules()
    chosen = {r.code for r in pruning_rules(rules)}
    assert chosen == {r.code for r in rules if is_severe(r.severity, r.category)}
    assert {"PD101", "PD102", "PD205", "PD501"} <= chosen  # divergence, a dead network, a broken evaluation
    assert not chosen & {"PD301", "PD401", "PD403", "PD405", "PD202", "PD104"}  # overfitting, gradients, warnings
    assert all(r.severity in ("critical", "error") for r in pruning_rules(rules))


def test_an_exploding_sgd_lr10_trial_is_pruned_in_its_first_epoch_with_the_finding_recorded(module_store, doctor):
    # weight decay 1.0 at lr 10: the loss grows ~1e17x within the first epoch (NaN only follows later)
    result, listener = _train(["trainer.max_epochs=4", "optimizer.name=sgd", "optimizer.lr=10",
                               "optimizer.weight_decay=1.0"], doctor)
    pruned = listener.pruned
    assert pruned is not None and pruned.by == "PD102" and pruned.epoch == 1
    assert pruned.reason.startswith("step/loss grew") and "above its running minimum" in pruned.reason
    assert result.status == "FINISHED" and result.stop_reason == "pruned" and result.epochs_run == 1
    tags = module_store.get_run(result.run_id).data.tags
    assert tags[TAG_PRUNED_BY] == "PD102" and tags["paramdoctor.pruned_reason"] == pruned.reason
    assert tags[keys.TAG_STOP_REASON] == "pruned"
    assert listener.check_ms is not None and len(listener.check_seconds) == 1


def test_a_dead_sgd_lr10_trial_is_pruned_once_the_rule_has_its_epochs(module_store, doctor):
    result, listener = _train(["trainer.max_epochs=8", "optimizer.name=sgd", "optimizer.lr=10"], doctor)
    pruned = listener.pruned
    assert pruned is not None and pruned.by == "PD205" and "chance-level loss" in pruned.reason
    assert pruned.epoch == 3 and result.epochs_run == 3  # of 8: PD205 needs three epochs of training loss
    assert module_store.get_run(result.run_id).data.tags[TAG_PRUNED_BY] == "PD205"


def test_a_nan_loss_counts_as_pruned_by_the_doctor_not_a_crash(module_store, doctor):
    # batches of 8: the loss turns NaN at step 31, inside the first epoch, before any epoch-end check
    result, listener = _train(["trainer.max_epochs=4", "data.batch_size=8", "optimizer.name=sgd", "optimizer.lr=10",
                               "optimizer.weight_decay=1.0"], doctor)
    assert result.status == "FAILED" and result.stop_reason == "nonfinite_loss"
    assert listener.pruned.by == "PD101" and "became nan" in listener.pruned.reason


def test_a_healthy_trial_is_not_pruned(module_store, doctor):
    result, listener = _train(["trainer.max_epochs=4"], doctor)
    assert listener.pruned is None
    assert result.status == "FINISHED" and result.stop_reason in ("max_epochs", "early_stopping")
    assert len(listener.check_seconds) == result.epochs_run  # judged every epoch, silent every time


def test_no_doctor_means_a_nan_is_pruned_by_fits_own_stop(module_store):
    result, listener = _train(["trainer.max_epochs=4", "data.batch_size=8", "optimizer.name=sgd", "optimizer.lr=10",
                               "optimizer.weight_decay=1.0"], None)
    assert listener.pruned.by == "nonfinite_loss" and "non-finite" in listener.pruned.reason
    assert listener.check_seconds == []


def test_warmup_delays_every_verdict_but_divergence():
    assert DoctorPruner.first_epoch_for_all(0.0) == EPOCHS_AT_PEAK_LR
    assert DoctorPruner.first_epoch_for_all(1.5) == 2 + EPOCHS_AT_PEAK_LR


def test_the_rise_to_the_peak_lr_is_the_warmup_or_onecycles_share():
    from paramdoctor.experiments.doctor_pruning import rising_epochs

    assert rising_epochs(to_tree(load_config(None, ["scheduler.warmup_epochs=1.5"]))) == 1.5
    assert rising_epochs(to_tree(load_config(None, ["scheduler.name=onecycle", "trainer.max_epochs=10"]))) == 3.0
    assert rising_epochs({}) == 0.0


def _at_chance_in_training(val_acc: float):
    """Five epochs whose training loss sits at ln(10) while validation scores ``val_acc``."""
    import numpy as np

    from paramdoctor.record import RunRecord, Series

    epochs = np.arange(1.0, 6.0)
    series = {
        keys.TRAIN_LOSS: Series(epochs, np.array([2.31, 2.30, 2.29, 2.30, 2.29])),
        keys.TRAIN_ACC: Series(epochs, np.full(5, 0.12)),
        keys.VAL_LOSS: Series(epochs, np.array([2.3, 2.2, 2.1, 2.05, 2.0])),
        keys.VAL_ACC: Series(epochs, np.linspace(0.1, val_acc, 5)),
    }
    return RunRecord(series=series, config=to_tree(load_config(None, [])), meta={"num_classes": 10},
                     status="RUNNING")


def test_validation_that_learns_overrules_a_dead_network_call(doctor):
    from paramdoctor.experiments.doctor_pruning import validation_learns

    dead = _at_chance_in_training(0.13)
    assert validation_learns(dead) is None
    assert doctor.judge(dead).code == "PD205"
    regularised = _at_chance_in_training(0.51)  # dropout and augmentation hold the training loss up; val learns
    assert validation_learns(regularised) == "val/acc reached 0.51 (chance 0.1)"
    assert doctor.judge(regularised) is None
