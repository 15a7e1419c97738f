"""Real short trainings on digits, read back from a real SQLite MLflow store."""

from __future__ import annotations

import math

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from paramdoctor import keys
from paramdoctor.config import load_config
from paramdoctor.data import build_loaders
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.models import build_model
from paramdoctor.training import fit

FAST = ["data.subset=256", "trainer.telemetry_every_n_steps=2", "experiment.name=e2e"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module: creating MLflow's tables costs seconds."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        yield MlflowClient(tracking_uri=uri)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _checkpoint(client, run_id, tmp_path):
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoints/best.pt", dst_path=str(tmp_path))
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model", "split"}  # the weights travel with the split they were trained on
    return saved["model"]


def test_a_short_run_records_every_curve_param_tag_and_artifact(store):
    config = load_config(None, [*FAST, "trainer.max_epochs=2", "experiment.run_name=short"])
    result = fit(config)
    assert result.status == "FINISHED" and result.stop_reason == "max_epochs" and result.epochs_run == 2
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "short"

    for key in (keys.TRAIN_LOSS, keys.TRAIN_ACC, keys.VAL_LOSS, keys.VAL_ACC, keys.EPOCH_TIME, keys.EPOCH_THROUGHPUT):
        assert [s for s, _ in _history(store, result.run_id, key)] == [1, 2], key
    steps_per_epoch = math.ceil(204 / 64)  # 256 subset; val_fraction applies before subset, so train has 256
    step_loss = _history(store, result.run_id, keys.STEP_LOSS)
    assert len(step_loss) >= 2 * 3 and all(math.isfinite(v) for _, v in step_loss)
    backbone = _history(store, result.run_id, keys.step_lr("backbone"))
    head = _history(store, result.run_id, keys.step_lr("head"))
    assert backbone and head and len(backbone) == len(head)
    assert all(h == pytest.approx(b) for (_, b), (_, h) in zip(backbone, head))  # from scratch: auto backbone LR = lr
    assert _history(store, result.run_id, keys.STEP_GRAD_NORM)
    for group in ("block1", "head"):
        for field in keys.TELEMETRY_FIELDS:
            assert _history(store, result.run_id, keys.telemetry(group, field)), (group, field)
    assert steps_per_epoch > 0

    params = run.data.params
    assert params["optimizer.lr"] == "0.001" and params["optimizer.backbone_lr"] == "null"  # the config keeps "auto"
    assert params["trainer.max_epochs"] == "2" and params["data.dataset"] == "digits"
    tags = run.data.tags
    assert tags[keys.TAG_DATASET] == "digits" and tags[keys.TAG_MODEL] == "small_cnn"
    assert tags[keys.TAG_NUM_CLASSES] == "10" and tags[keys.TAG_STOP_REASON] == "max_epochs"
    assert tags[keys.TAG_VERSION]
    artifacts = {a.path for a in store.list_artifacts(result.run_id)} | {
        a.path for a in store.list_artifacts(result.run_id, "checkpoints")
    }
    assert {"config.yaml", "checkpoints/best.pt"} <= artifacts
    assert run.data.metrics[keys.BEST_EPOCH] == result.best_epoch


def test_fine_tuning_a_checkpoint_trains_the_backbone_at_a_tenth_of_the_lr(store):
    source = fit(load_config(None, [*FAST, "trainer.max_epochs=1", "experiment.run_name=source"]))
    tuned = fit(load_config(None, [*FAST, "trainer.max_epochs=1", f"model.weights=runs:/{source.run_id}/checkpoints/best.pt"]))
    backbone = [v for _, v in _history(store, tuned.run_id, keys.step_lr("backbone"))]
    head = [v for _, v in _history(store, tuned.run_id, keys.step_lr("head"))]
    assert backbone and len(backbone) == len(head)
    assert all(h == pytest.approx(10 * b) for b, h in zip(backbone, head))  # auto on pretrained weights: lr / 10
    assert store.get_run(tuned.run_id).data.params["optimizer.backbone_lr"] == "null"


def test_early_stopping_stops_and_restores_the_best_weights(store, tmp_path):
    # nothing after epoch 1 can beat it by min_delta, so patience 1 stops at epoch 2
    overrides = [*FAST, "trainer.max_epochs=6", "early_stopping.monitor=val/loss", "early_stopping.mode=min",
                 "early_stopping.patience=1", "early_stopping.min_delta=100", "data.augment=false"]
    config = load_config(None, overrides)
    result = fit(config)
    assert result.stop_reason == "early_stopping" and result.epochs_run == 2 and result.best_epoch == 1
    assert store.get_run(result.run_id).data.tags[keys.TAG_STOP_REASON] == "early_stopping"

    # the checkpoint holds epoch 1's weights: evaluating it gives epoch 1's val/loss, not epoch 2's
    state = _checkpoint(store, result.run_id, tmp_path)
    loaders = build_loaders(config.data, seed=config.seed, device=torch.device("cpu"), model_name="small_cnn")
    model = build_model(config.model, num_classes=10, in_channels=1, image_size=loaders.image_size).model
    model.load_state_dict(state)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in loaders.val:
            total += torch.nn.functional.cross_entropy(model(x), y, reduction="sum").item()
            n += y.numel()
    val_loss = dict(_history(store, result.run_id, keys.VAL_LOSS))
    assert total / n == pytest.approx(val_loss[1], rel=1e-4)
    assert val_loss[1] != pytest.approx(val_loss[2], rel=1e-4)


def test_gradient_accumulation_4x16_equals_one_batch_of_64(store, tmp_path):
    # no augmentation, no dropout, BatchNorm statistics frozen: the only difference is how the batch is split
    same = [*FAST, "trainer.max_epochs=1", "data.augment=false", "model.batchnorm_eval=true", "early_stopping.enabled=false"]
    big = fit(load_config(None, [*same, "data.batch_size=64", "trainer.accumulate_grad_batches=1"]))
    small = fit(load_config(None, [*same, "data.batch_size=16", "trainer.accumulate_grad_batches=4"]))
    a = _checkpoint(store, big.run_id, tmp_path / "a")
    b = _checkpoint(store, small.run_id, tmp_path / "b")
    assert a.keys() == b.keys()
    moved = 0
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), rtol=1e-4, atol=1e-5), name
    init = build_model(load_config(None, same).model, num_classes=10, in_channels=1).model.state_dict()
    moved = sum(not torch.equal(init[k], a[k]) for k in a if a[k].is_floating_point())
    assert moved > 0  # the comparison is of trained weights, not of two untouched models
    steps_big = len(_history(store, big.run_id, keys.STEP_LOSS))
    steps_small = len(_history(store, small.run_id, keys.STEP_LOSS))
    assert steps_big == steps_small  # one optimizer step per 64 samples in both


def test_a_diverging_run_is_recorded_as_failed_with_the_nan_as_evidence(store):
    # BatchNorm keeps a merely huge LR finite; an L2 term of lr*wd = 10 flips and grows the weights until they overflow
    config = load_config(None, [*FAST, "trainer.max_epochs=4", "optimizer.name=sgd", "optimizer.lr=10",
                                "optimizer.backbone_lr=10", "optimizer.momentum=0.9", "optimizer.weight_decay=1.0",
                                "data.batch_size=16"])
    result = fit(config)
    assert result.status == "FAILED" and result.stop_reason == "nonfinite_loss"
    run = store.get_run(result.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[keys.TAG_STOP_REASON] == "nonfinite_loss"
    assert "step" in run.data.tags[keys.TAG_FAILURE]
    values = [v for _, v in _history(store, result.run_id, keys.STEP_LOSS)]
    assert values and not math.isfinite(values[-1])


def test_bad_input_fails_before_any_run_exists(store):
    before = len(store.search_runs([e.experiment_id for e in store.search_experiments()]))
    with pytest.raises(ConfigError, match="model"):
        fit(load_config(None, [*FAST, "model.name=resnet_nope"]))
    with pytest.raises(InputError, match="cifar"):
        fit(load_config(None, [*FAST, "data.dataset=cifar10", "data.root=does/not/exist"]))
    after = len(store.search_runs([e.experiment_id for e in store.search_experiments()]))
    assert after == before


def test_freezing_the_backbone_leaves_it_untouched_for_those_epochs(store, tmp_path):
    config = load_config(None, [*FAST, "trainer.max_epochs=2", "model.freeze_backbone_epochs=1",
                                "model.batchnorm_eval=true", "early_stopping.enabled=false", "data.augment=false"])
    result = fit(config)
    drift = dict(_history(store, result.run_id, keys.telemetry("block1", "drift")))
    tags = store.get_run(result.run_id).data.tags
    steps_per_epoch = int(tags[keys.TAG_STEPS_PER_EPOCH])
    assert steps_per_epoch == -(-int(tags[keys.TAG_TRAIN_SAMPLES]) // config.data.batch_size)
    assert all(v == 0.0 for s, v in drift.items() if s <= steps_per_epoch)
    assert any(v > 0.0 for s, v in drift.items() if s > steps_per_epoch)
