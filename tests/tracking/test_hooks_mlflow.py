"""The hooks in a hand-written loop, recorded by start_run, read back from MLflow."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from paramdoctor import keys
from paramdoctor.hooks import NonFiniteLossError, TrainingMonitor
from paramdoctor.tracking import start_run


def tiny_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 2e-3, "name": "backbone"},
            {"params": model[2].parameters(), "lr": 2e-2, "name": "head"},
        ]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]
    return model, optimizer, scheduler, batches


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_hand_written_loop_is_recorded_in_mlflow(client):
    model, optimizer, scheduler, batches = tiny_problem()
    clip_norms = []
    with start_run(experiment="hooks", params={"optimizer.lr": 2e-2}) as run:
        monitor = TrainingMonitor(optimizer, run.sink, model=model, telemetry_every_n_steps=2)
        monitor.before_fit()
        for epoch in (1, 2):
            for x, y in batches:
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                monitor.after_backward()
                clip_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)))
                optimizer.step()
                monitor.after_step(loss)
                optimizer.zero_grad()
                scheduler.step()
            monitor.after_epoch(epoch, {keys.TRAIN_LOSS: 0.7 / epoch, keys.VAL_ACC: 0.5 + epoch / 10})
        monitor.after_fit()

    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert [s for s, _ in history(client, run.run_id, keys.STEP_LOSS)] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in history(client, run.run_id, keys.STEP_GRAD_NORM)] == pytest.approx(clip_norms, rel=1e-6)
    assert [v for _, v in history(client, run.run_id, keys.step_lr("head"))] == pytest.approx(
        [2e-2, 2e-2, 1e-2, 1e-2, 5e-3, 5e-3]
    )
    assert [v for _, v in history(client, run.run_id, keys.step_lr("backbone"))] == pytest.approx(
        [2e-3, 2e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    )
    for group in ("0", "2"):  # default layer groups: the model's top-level children with parameters
        drift = history(client, run.run_id, keys.telemetry(group, keys.TELEMETRY_DRIFT))
        assert [s for s, _ in drift] == [0, 1, 2, 4, 6]
        assert drift[0][1] == 0.0 and all(v > 0 for _, v in drift[1:])
        ratio = history(client, run.run_id, keys.telemetry(group, keys.TELEMETRY_UPDATE_RATIO))
        assert [s for s, _ in ratio] == [1, 2, 4, 6] and all(v > 0 for _, v in ratio)
    assert history(client, run.run_id, keys.VAL_ACC) == [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))]


def test_diverged_loop_ends_failed_with_the_nan_recorded(client):
    model, optimizer, _, batches = tiny_problem()
    with pytest.raises(NonFiniteLossError):
        with start_run(experiment="hooks") as run:
            monitor = TrainingMonitor(optimizer, run.sink, model=model)
            for step, (x, y) in enumerate(batches, start=1):
                loss = nn.functional.cross_entropy(model(x), y) * (float("nan") if step == 2 else 1.0)
                loss.backward()
                monitor.after_backward()
                optimizer.step()
                monitor.after_step(loss)
                optimizer.zero_grad()
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert "optimizer step 2" in stored.data.tags[keys.TAG_FAILURE]
    loss = history(client, run.run_id, keys.STEP_LOSS)
    assert [s for s, _ in loss] == [1, 2] and math.isnan(loss[1][1])
