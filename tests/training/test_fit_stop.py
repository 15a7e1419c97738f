"""fit ends a run in order when its listener raises StopTraining, and taps every metric in process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from paramdoctor import keys
from paramdoctor.config import load_config
from paramdoctor.hooks import MemorySink
from paramdoctor.training import fit
from paramdoctor.training.fit import STOP_PRUNED, StopTraining

FAST = ["data.subset=256", "trainer.telemetry_every_n_steps=2", "experiment.name=stop"]


class StopAt:
    """Raises StopTraining at the end of epoch ``epoch``; records what it saw."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.seen = epoch, []

    def on_fit_start(self, **_):
        pass

    def on_step(self, **_):
        pass

    def on_epoch_end(self, *, epoch, metrics, improved):
        self.seen.append(epoch)
        if epoch == self.epoch:
            raise StopTraining(STOP_PRUNED, "judged hopeless", tags={"paramdoctor.pruned_by": "PD999"})


def test_a_listener_stops_the_run_after_a_complete_epoch_and_it_ends_finished_pruned(module_store):
    listener = StopAt(2)
    tap = MemorySink()
    result = fit(load_config(None, [*FAST, "trainer.max_epochs=5"]), listener=listener, metric_tap=tap)
    assert listener.seen == [1, 2]
    assert result.status == "FINISHED" and result.stop_reason == STOP_PRUNED and result.failure is None
    assert result.epochs_run == 2 and [row["epoch"] for row in result.history] == [1, 2]
    assert result.best_epoch in (1, 2) and math.isfinite(result.best_value)

    run = module_store.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[keys.TAG_STOP_REASON] == "pruned"
    assert run.data.tags["paramdoctor.pruned_by"] == "PD999"
    assert [m.step for m in module_store.get_metric_history(result.run_id, keys.VAL_ACC)] == [1, 2]
    assert "checkpoints/best.pt" in {a.path for a in module_store.list_artifacts(result.run_id, "checkpoints")}
    # the stopping epoch is complete: its checkpoint was written before the run ended
    last = Path(result.checkpoint_dir) / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_the_tap_receives_what_the_run_stores(module_store):
    tap = MemorySink()
    result = fit(load_config(None, [*FAST, "trainer.max_epochs=2"]), metric_tap=tap)
    assert result.status == "FINISHED" and result.stop_reason == "max_epochs"
    for key in (keys.TRAIN_LOSS, keys.VAL_ACC, keys.STEP_LOSS, keys.STEP_GRAD_NORM):
        stored = sorted((m.step, m.value) for m in module_store.get_metric_history(result.run_id, key))
        tapped = sorted(tap.metrics[key])
        assert [s for s, _ in tapped] == [s for s, _ in stored], key
        assert [v for _, v in tapped] == pytest.approx([v for _, v in stored], rel=1e-6), key
    assert any(k.startswith(keys.TELEMETRY_PREFIX) for k in tap.metrics)


def test_a_divergence_still_ends_failed_when_the_listener_would_stop(module_store):
    # SGD at lr 10 with weight decay 1.0 overflows within three epochs of 13 steps: NaN at the step, mid-epoch
    config = load_config(None, [*FAST, "trainer.max_epochs=4", "data.batch_size=16", "optimizer.name=sgd",
                                "optimizer.lr=10", "optimizer.weight_decay=1.0"])
    listener = StopAt(99)
    result = fit(config, listener=listener, metric_tap=MemorySink())
    assert result.status == "FAILED" and result.stop_reason == "nonfinite_loss"
    assert module_store.get_run(result.run_id).info.status == "FAILED"


def test_stop_training_defaults_to_pruned():
    exc = StopTraining()
    assert exc.reason == STOP_PRUNED and exc.tags == {} and str(exc) == "pruned"
