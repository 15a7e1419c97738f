"""normalize_metric_names: runs that HF, Lightning and Keras logged to MLflow under their own names."""

from __future__ import annotations

import numpy as np
import pytest

from paramdoctor import keys
from paramdoctor.errors import InputError
from paramdoctor.importers import normalize_metric_names
from paramdoctor.record import Series


def _s(steps, values) -> Series:
    return Series(np.asarray(steps, dtype=float), np.asarray(values, dtype=float))


def _hf_run() -> dict[str, Series]:
    """What MLflowCallback logs (step = global_step): logging_steps=10, eval every 50 steps."""
    train_steps = list(range(10, 101, 10))
    return {
        "loss": _s(train_steps, [2.0, 1.8, 1.6, 1.4, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7]),
        "learning_rate": _s(train_steps, [5e-5 * (1 - s / 100) for s in train_steps]),
        "grad_norm": _s(train_steps, [3.0] * 10),
        "epoch": _s(train_steps + [50, 100], [s / 100 for s in train_steps] + [0.5, 1.0]),
        "eval_loss": _s([50, 100], [1.5, 1.2]),
        "eval_accuracy": _s([50, 100], [0.6, 0.7]),
        "eval_f1": _s([50, 100], [0.55, 0.66]),
        "eval_runtime": _s([50, 100], [3.2, 3.1]),
        "train_loss": _s([100], [1.25]),  # the whole run's mean, logged once at the end
        "train_runtime": _s([100], [99.0]),
        "custom_thing": _s([1], [7.0]),
    }


def test_hf_names():
    series, tool = normalize_metric_names(_hf_run())
    assert tool == "hf_trainer"
    assert series[keys.STEP_LOSS].values[0] == 2.0
    assert series[keys.step_lr("default")].values[0] == pytest.approx(4.5e-5)
    assert series[keys.STEP_GRAD_NORM].steps.tolist() == list(range(10, 101, 10))
    assert series[keys.VAL_LOSS].steps.tolist() == [50, 100]
    assert series[keys.VAL_ACC].values.tolist() == [0.6, 0.7]
    assert series["val/f1"].values.tolist() == [0.55, 0.66]
    # train/loss at each evaluation: the mean of the losses logged since the previous one
    assert series[keys.TRAIN_LOSS].steps.tolist() == [50, 100]
    assert series[keys.TRAIN_LOSS].values.tolist() == pytest.approx([1.6, 0.9])
    for gone in ("loss", "eval_loss", "train_loss", "train_runtime", "eval_runtime", "epoch"):
        assert gone not in series
    assert series["custom_thing"].values.tolist() == [7.0]  # unknown names are kept as they are


def test_lightning_names_with_step_and_epoch_suffixes():
    run = {
        "train_loss_step": _s([49, 99, 149, 199], [1.9, 1.5, 1.2, 1.0]),
        "train_loss_epoch": _s([99, 199], [1.6, 1.1]),
        "val_loss": _s([99, 199], [1.4, 1.2]),
        "val_acc": _s([99, 199], [0.5, 0.6]),
        "lr-AdamW": _s([49, 99, 149, 199], [1e-3] * 4),
        "epoch": _s([49, 99, 149, 199], [0, 0, 1, 1]),
    }
    series, tool = normalize_metric_names(run)
    assert tool == "lightning"
    assert series[keys.STEP_LOSS].values.tolist() == [1.9, 1.5, 1.2, 1.0]
    assert series[keys.VAL_ACC].steps.tolist() == [99, 199]
    assert series[keys.step_lr("default")].values.tolist() == [1e-3] * 4
    # evaluations are by step here: train/loss is the mean of the step losses since the last validation
    assert series[keys.TRAIN_LOSS].values.tolist() == pytest.approx([1.7, 1.1])


def test_lightning_plain_train_loss_logged_every_step_is_a_step_series():
    run = {
        "train_loss": _s([9, 19, 29, 39], [2.0, 1.0, 0.8, 0.6]),
        "val_loss": _s([19, 39], [1.2, 0.9]),
    }
    series, tool = normalize_metric_names(run)
    assert tool == "lightning"
    assert series[keys.STEP_LOSS].values.tolist() == [2.0, 1.0, 0.8, 0.6]
    assert series[keys.TRAIN_LOSS].values.tolist() == pytest.approx([1.5, 0.7])


def test_keras_autolog_names_move_to_one_based_epochs():
    run = {
        "loss": _s([0, 1, 2], [1.0, 0.6, 0.4]),
        "accuracy": _s([0, 1, 2], [0.5, 0.7, 0.8]),
        "val_loss": _s([0, 1, 2], [1.1, 0.8, 0.7]),
        "val_accuracy": _s([0, 1, 2], [0.45, 0.65, 0.7]),
        "learning_rate": _s([0, 1, 2], [1e-3, 1e-3, 5e-4]),
    }
    series, tool = normalize_metric_names(run)
    assert tool == "keras"
    assert series[keys.TRAIN_LOSS].steps.tolist() == [1, 2, 3]
    assert series[keys.TRAIN_ACC].values.tolist() == [0.5, 0.7, 0.8]
    assert series[keys.VAL_ACC].steps.tolist() == [1, 2, 3]
    assert series[keys.epoch_lr("default")].values.tolist() == [1e-3, 1e-3, 5e-4]
    assert "loss" not in series and "val_accuracy" not in series


def test_unknown_names_pass_through_unless_mapped():
    run = {"objective": _s([1, 2], [1.0, 0.5]), "holdout": _s([1, 2], [1.1, 0.9])}
    series, tool = normalize_metric_names(run)
    assert tool is None and set(series) == {"objective", "holdout"}
    series, tool = normalize_metric_names(run, {"train/loss": "objective", "val/loss": "holdout"})
    assert series[keys.VAL_LOSS].values.tolist() == [1.1, 0.9]
    assert series[keys.TRAIN_LOSS].values.tolist() == [1.0, 0.5]


def test_a_mapping_to_a_missing_metric_is_an_input_error():
    with pytest.raises(InputError, match="no metric 'top1'"):
        normalize_metric_names(_hf_run(), {"val/acc": "top1"})


def test_names_read_back_from_a_real_mlflow_store(store_uri):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store_uri)
    run_id = client.create_run(client.create_experiment("hf")).info.run_id
    metrics = [Metric(name, v, 0, int(x)) for name, s in _hf_run().items() for x, v in zip(s.steps, s.values)]
    client.log_batch(run_id, metrics=metrics)
    read = {}
    for name in client.get_run(run_id).data.metrics:
        history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        read[name] = _s([m.step for m in history], [m.value for m in history])
    series, tool = normalize_metric_names(read)
    assert tool == "hf_trainer"
    assert series[keys.TRAIN_LOSS].values.tolist() == pytest.approx([1.6, 0.9])
    assert series[keys.VAL_LOSS].values.tolist() == [1.5, 1.2]
