"""Learning-rate schedules, stepped once per optimizer step.

Cosine, step and constant schedules are one multiplier ``factor(step)`` applied to
every group's peak LR (so the backbone/head ratio holds throughout), with an
optional linear warmup from zero. One-cycle uses PyTorch's own ``OneCycleLR``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from paramdoctor.config.schema import SchedulerConfig


def lr_factor(cfg: SchedulerConfig, step: int, *, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak LR for the optimizer step ``step`` (0-based)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        epoch = step // max(steps_per_epoch, 1)
        return cfg.gamma ** (epoch // cfg.step_size)
    # cosine from the end of warmup to the last step, down to min_lr_ratio
    span = max(total_steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, *, total_steps: int, steps_per_epoch: int
) -> LRScheduler:
    if cfg.name == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(total_steps, 2),
            pct_start=cfg.pct_start,
            cycle_momentum=isinstance(optimizer, torch.optim.SGD),
        )
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, step, total_steps=total_steps, steps_per_epoch=steps_per_epoch))
