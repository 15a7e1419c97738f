"""Optimizers with discriminative learning rates and weight decay only where it belongs.

Parameter groups are named ``backbone`` and ``head`` (the names the learning-rate
curves are logged under). The head trains at ``optimizer.lr``; the backbone at
:func:`~paramdoctor.config.effective_backbone_lr` (an explicit
``optimizer.backbone_lr``, else a tenth of ``lr`` for pretrained weights and
``lr`` itself from scratch). Each is split in two underneath: weights that decay,
and biases/normalisation parameters that do not (decaying a BatchNorm scale or a
bias towards zero only hurts). The split groups keep the same ``name``, so the
telemetry logs one learning rate per named group.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from paramdoctor.config.resolve import effective_backbone_lr
from paramdoctor.config.schema import TrainConfig


def _decays(param: nn.Parameter) -> bool:
    return param.ndim > 1  # weights of conv/linear layers; not biases, not norm scales


def group_lrs(config: TrainConfig) -> dict[str, float]:
    """Peak learning rate of each named group."""
    return {"backbone": effective_backbone_lr(config), "head": config.optimizer.lr}


def param_groups(config: TrainConfig, named_groups: dict[str, Iterable[nn.Parameter]]) -> list[dict]:
    cfg = config.optimizer
    lrs = group_lrs(config)
    groups: list[dict] = []
    for name, params in named_groups.items():
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        lr = lrs.get(name, cfg.lr)
        decay = [p for p in params if _decays(p)]
        no_decay = [p for p in params if not _decays(p)]
        if decay:
            groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": name})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": name})
    return groups


def build_optimizer(config: TrainConfig, named_groups: dict[str, Iterable[nn.Parameter]], *, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of ``config.optimizer`` over the named groups; it needs the whole config because
    the backbone's LR depends on whether ``model.weights`` starts it from pretrained weights."""
    cfg = config.optimizer
    groups = param_groups(config, named_groups)
    extra = {"fused": True} if fused else {}
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **extra)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, **extra)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
