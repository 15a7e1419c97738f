"""Optimizer groups get the resolved backbone LR; schedules keep the backbone/head ratio; weight decay skips biases and norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramdoctor.config.schema import ModelConfig, OptimizerConfig, SchedulerConfig, TrainConfig
from paramdoctor.training.optim import build_optimizer, group_lrs
from paramdoctor.training.schedule import build_scheduler, lr_factor


def _config(weights: str | None = None, **optimizer) -> TrainConfig:
    return TrainConfig(optimizer=OptimizerConfig(**optimizer), model=ModelConfig(weights=weights))


def _lrs(opt: torch.optim.Optimizer) -> dict[str, set[float]]:
    by_name: dict[str, set[float]] = {}
    for g in opt.param_groups:
        by_name.setdefault(g["name"], set()).add(g["lr"])
    return by_name


def _named_groups():
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    head = nn.Linear(4, 3)
    return {"backbone": list(backbone.parameters()), "head": list(head.parameters())}


def test_each_named_group_gets_its_own_lr_and_decay_only_on_weights():
    opt = build_optimizer(_config(lr=1e-3, backbone_lr=1e-4, weight_decay=0.01), _named_groups())
    by_name = {}
    for g in opt.param_groups:
        by_name.setdefault(g["name"], []).append(g)
    assert {g["lr"] for g in by_name["backbone"]} == {1e-4}
    assert {g["lr"] for g in by_name["head"]} == {1e-3}
    for g in opt.param_groups:
        dims = {p.ndim for p in g["params"]}
        assert g["weight_decay"] == (0.01 if dims == {4} or dims == {2} else 0.0)
    assert isinstance(opt, torch.optim.AdamW)


def test_from_scratch_the_default_backbone_group_trains_at_the_head_lr():
    assert group_lrs(_config(lr=3e-3)) == {"backbone": 3e-3, "head": 3e-3}
    assert _lrs(build_optimizer(TrainConfig(), _named_groups())) == {"backbone": {1e-3}, "head": {1e-3}}


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "ckpt/best.pt", "runs:/0123abcd/checkpoints/best.pt"])
def test_a_pretrained_or_checkpoint_start_gives_the_backbone_a_tenth_of_the_lr(weights):
    lrs = _lrs(build_optimizer(_config(weights, lr=2e-3), _named_groups()))
    assert lrs["head"] == {2e-3} and [pytest.approx(2e-4)] == list(lrs["backbone"])


@pytest.mark.parametrize("weights", [None, "IMAGENET1K_V1"])
def test_an_explicit_backbone_lr_wins(weights):
    assert group_lrs(_config(weights, lr=1e-3, backbone_lr=5e-3)) == {"backbone": 5e-3, "head": 1e-3}


def test_sgd_with_nesterov():
    opt = build_optimizer(_config(name="sgd", momentum=0.9, nesterov=True), _named_groups())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]


def test_warmup_then_cosine_to_floor():
    cfg = SchedulerConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    f = [lr_factor(cfg, s, total_steps=100, steps_per_epoch=10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warmup over 10 steps
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warmup
    assert f[-1] == pytest.approx(0.1, abs=1e-3)


def test_step_and_constant():
    step = SchedulerConfig(name="step", step_size=2, gamma=0.5)
    assert [lr_factor(step, s, total_steps=60, steps_per_epoch=10) for s in (0, 19, 20, 40)] == [1, 1, 0.5, 0.25]
    const = SchedulerConfig(name="constant")
    assert lr_factor(const, 55, total_steps=60, steps_per_epoch=10) == 1.0


@pytest.mark.parametrize("name", ["cosine", "step", "onecycle", "constant"])
def test_schedulers_keep_the_discriminative_ratio(name):
    opt = build_optimizer(_config("IMAGENET1K_V1", lr=1e-3), _named_groups())  # auto: backbone at lr / 10
    sched = build_scheduler(SchedulerConfig(name=name), opt, total_steps=50, steps_per_epoch=5)
    for _ in range(20):
        opt.step()
        sched.step()
        lrs = {g["name"]: g["lr"] for g in opt.param_groups}
        assert lrs["head"] == pytest.approx(10 * lrs["backbone"], rel=1e-6)
