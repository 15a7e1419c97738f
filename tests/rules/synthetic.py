"""Synthetic but realistic run records: a healthy fine-tuning run and one sick variant per symptom.

Curves are built the way real ones look: exponential decay towards a floor
plus noise proportional to the level (mini-batch noise on step losses, a small
validation set's noise on val curves), a warmup + cosine learning rate, and
telemetry every 10 steps. ``make(kind, seed)`` returns a fresh RunRecord.
"""

from __future__ import annotations

import math

import numpy as np

from paramdoctor.config import TrainConfig, to_tree
from paramdoctor.record import RunRecord, Series

NUM_CLASSES = 10
STEPS_PER_EPOCH = 25
TELEMETRY_EVERY = 10
GROUPS = ("head", "backbone.layer3", "backbone.layer4")


def _config(**sections) -> dict:
    tree = to_tree(TrainConfig())
    tree["model"].update({"name": "resnet18", "weights": "DEFAULT"})
    tree["data"].update({"dataset": "cifar10", "image_size": 64})
    for section, values in sections.items():
        tree[section].update(values)
    return to_tree(TrainConfig.model_validate(tree))


class Run:
    """Mutable curves for one run; ``record()`` freezes them into a RunRecord."""

    def __init__(self, seed: int, epochs: int = 24):
        self.rng = np.random.default_rng(seed)
        self.epochs = epochs
        self.x = np.arange(1, epochs + 1, dtype=float)
        t = self.x
        r = self.rng
        self.train_loss = (0.06 + 1.0 * np.exp(-0.4 * t)) * (1 + 0.01 * r.standard_normal(epochs))
        self.val_loss = (0.16 + 0.95 * np.exp(-0.45 * t)) * (1 + 0.03 * r.standard_normal(epochs))
        self.train_acc = np.clip(0.985 - 0.5 * np.exp(-0.4 * t) + 0.003 * r.standard_normal(epochs), 0, 1)
        self.val_acc = np.clip(0.955 - 0.5 * np.exp(-0.45 * t) + 0.006 * r.standard_normal(epochs), 0, 1)
        n_steps = epochs * STEPS_PER_EPOCH
        self.steps = np.arange(1, n_steps + 1, dtype=float)
        s = self.steps / STEPS_PER_EPOCH
        self.step_loss = (0.05 + 2.25 * np.exp(-1.2 * s) + 0.8 * np.exp(-0.35 * s) * 0.0) * np.exp(
            0.15 * r.standard_normal(n_steps)
        )
        self.step_loss = np.maximum(self.step_loss, 1e-4)
        self.lr = 1e-3 * np.minimum(1.0, s / 1.0) * 0.5 * (1 + np.cos(math.pi * self.steps / n_steps))
        self.grad_norm = (0.4 + 2.0 * np.exp(-0.5 * s)) * np.exp(0.2 * r.standard_normal(n_steps))
        self.tel_steps = np.arange(TELEMETRY_EVERY, n_steps + 1, TELEMETRY_EVERY, dtype=float)
        lr_at = np.interp(self.tel_steps, self.steps, self.lr) / 1e-3
        self.update_ratio = {
            "head": 3e-3 * lr_at * np.exp(0.2 * r.standard_normal(self.tel_steps.size)),
            "backbone.layer3": 2e-4 * lr_at * np.exp(0.2 * r.standard_normal(self.tel_steps.size)),
            "backbone.layer4": 4e-4 * lr_at * np.exp(0.2 * r.standard_normal(self.tel_steps.size)),
        }
        frac = self.tel_steps / n_steps
        self.drift = {
            "head": 0.9 * np.sqrt(frac),
            "backbone.layer3": 0.03 * np.sqrt(frac),
            "backbone.layer4": 0.08 * np.sqrt(frac),
        }
        self.status = "FINISHED"
        self.meta = {
            "num_classes": NUM_CLASSES,
            "max_epochs": epochs,
            "monitor": "val/acc",
            "mode": "max",
            "stop_reason": "early_stopping",
            "steps_per_epoch": STEPS_PER_EPOCH,
        }
        self.config = _config(trainer={"max_epochs": epochs})

    def stop_early(self, patience: int = 5) -> "Run":
        """Cut the epoch curves where early stopping on val/acc would have stopped (Lightning's semantics)."""
        best, wait = -np.inf, 0
        for i, value in enumerate(self.val_acc):
            if value > best:
                best, wait = value, 0
            else:
                wait += 1
                if wait >= patience:
                    n = i + 1
                    self.epochs = n
                    self.x = self.x[:n]
                    for name in ("train_loss", "val_loss", "train_acc", "val_acc"):
                        setattr(self, name, getattr(self, name)[:n])
                    keep = self.steps <= n * STEPS_PER_EPOCH
                    for name in ("step_loss", "lr", "grad_norm"):
                        setattr(self, name, getattr(self, name)[keep])
                    self.steps = self.steps[keep]
                    tkeep = self.tel_steps <= n * STEPS_PER_EPOCH
                    self.update_ratio = {g: v[tkeep] for g, v in self.update_ratio.items()}
                    self.drift = {g: v[tkeep] for g, v in self.drift.items()}
                    self.tel_steps = self.tel_steps[tkeep]
                    self.meta["stop_reason"] = "early_stopping"
                    return self
        self.meta["stop_reason"] = "max_epochs"
        return self

    def record(self, *, epoch_x=None, x_unit: str = "epoch", telemetry: bool = True) -> RunRecord:
        x = self.x if epoch_x is None else epoch_x
        series = {
            "train/loss": Series(x, self.train_loss),
            "val/loss": Series(x, self.val_loss),
            "train/acc": Series(x, self.train_acc),
            "val/acc": Series(x, self.val_acc),
            "step/loss": Series(self.steps, self.step_loss),
            "step/lr/head": Series(self.steps, self.lr),
            "step/grad_norm": Series(self.steps, self.grad_norm),
        }
        if telemetry:
            for g in GROUPS:
                series[f"telemetry/{g}/update_ratio"] = Series(self.tel_steps, self.update_ratio[g])
                series[f"telemetry/{g}/drift"] = Series(self.tel_steps, self.drift[g])
        return RunRecord(
            series=series,
            config=self.config,
            meta=dict(self.meta),
            run_id="synthetic",
            run_name="synthetic",
            status=self.status,
            x_unit=x_unit,
        )


def healthy(seed: int = 0) -> RunRecord:
    """Steady decline then flattening, stopped by early stopping (patience 5)."""
    return Run(seed, epochs=30).stop_early().record()


def healthy_at_max_epochs(seed: int = 0) -> RunRecord:
    """A shorter budget that runs out while the curves are already flat."""
    run = Run(seed, epochs=16)
    run.meta["stop_reason"] = "max_epochs"
    return run.record()


def healthy_in_steps(seed: int = 0) -> RunRecord:
    """Evaluated every 50 steps instead of every epoch (x_unit == "step")."""
    run = Run(seed, epochs=30).stop_early()
    return run.record(epoch_x=run.x * 50, x_unit="step")


def _nonfinite(seed: int) -> RunRecord:
    run = Run(seed)
    cut = 6
    run.train_loss = run.train_loss.copy()
    run.train_loss[cut - 1 :] = np.nan
    run.step_loss = run.step_loss.copy()
    run.step_loss[cut * STEPS_PER_EPOCH - 7 :] = np.nan
    run.status = "FAILED"
    run.meta["stop_reason"] = "nonfinite_loss"
    return run.record()


def _explodes(seed: int) -> RunRecord:
    run = Run(seed, epochs=12)
    s = run.steps / STEPS_PER_EPOCH
    blow = np.where(s > 4, np.exp(0.9 * (s - 4)), 1.0)
    run.step_loss = run.step_loss * blow
    run.train_loss = run.train_loss * np.where(run.x > 4, np.exp(0.9 * (run.x - 4)), 1.0)
    run.val_loss = run.val_loss * np.where(run.x > 4, np.exp(0.9 * (run.x - 4)), 1.0)
    return run.record()


def _spikes(seed: int) -> RunRecord:
    run = Run(seed)
    run.step_loss = run.step_loss.copy()
    for step in (12, 31, 58, 77, 96):
        run.step_loss[step] *= 4.0
    return run.record()


def _noisy_steps(seed: int) -> RunRecord:
    """Batches of two: per-step losses scatter over a wide range around a falling trend."""
    run = Run(seed, epochs=8)
    s = run.steps / STEPS_PER_EPOCH
    run.step_loss = (0.4 + 1.9 * np.exp(-0.6 * s)) * np.exp(0.45 * run.rng.standard_normal(s.size))
    run.config = _config(data={"batch_size": 2}, trainer={"max_epochs": 8})
    return run.record()


def _oscillates(seed: int) -> RunRecord:
    run = Run(seed, epochs=16)
    t = run.x
    swing = 0.22 * np.where(t % 2 == 0, 1.0, -1.0)
    run.train_loss = 0.8 + 0.9 * np.exp(-0.25 * t) + swing + 0.01 * run.rng.standard_normal(t.size)
    run.val_loss = 0.9 + 0.9 * np.exp(-0.25 * t) + 1.2 * swing
    run.train_acc = np.clip(0.7 - 0.3 * np.exp(-0.25 * t) - 0.5 * swing, 0, 1)
    run.val_acc = np.clip(0.66 - 0.3 * np.exp(-0.25 * t) - 0.6 * swing, 0, 1)
    return run.record()


def _val_oscillates(seed: int) -> RunRecord:
    """Smooth training, but the validation loss jumps well above its trend every other epoch."""
    run = Run(seed, epochs=20)
    t, r = run.x, run.rng
    run.train_loss = (0.05 + 1.6 * np.exp(-0.35 * t)) * (1 + 0.01 * r.standard_normal(t.size))
    jump = np.where(t % 2 == 0, 1.0, 0.0) * (0.5 + 0.2 * r.random(t.size))
    run.val_loss = (0.12 + 1.6 * np.exp(-0.35 * t)) * (1 + jump)
    run.val_acc = np.clip(0.95 - 0.5 * np.exp(-0.35 * t) - 0.08 * jump, 0, 1)
    run.config = _config(scheduler={"name": "constant"}, trainer={"max_epochs": 20})
    return run.record()


def _barely_moves(seed: int) -> RunRecord:
    run = Run(seed, epochs=15)
    t, r = run.x, run.rng
    run.train_loss = 2.31 - 0.006 * t + 0.002 * r.standard_normal(t.size)
    run.val_loss = 2.31 - 0.005 * t + 0.004 * r.standard_normal(t.size)
    run.train_acc = 0.10 + 0.004 * t
    run.val_acc = 0.10 + 0.004 * t
    run.step_loss = (2.31 - 0.006 * run.steps / STEPS_PER_EPOCH) * np.exp(0.05 * r.standard_normal(run.steps.size))
    run.grad_norm = 2.0 * np.exp(0.1 * r.standard_normal(run.steps.size))
    run.update_ratio = {g: v * 1e-3 for g, v in run.update_ratio.items()}
    run.config = _config(optimizer={"lr": 1e-6, "backbone_lr": 1e-7}, trainer={"max_epochs": 15})
    run.meta["stop_reason"] = "max_epochs"
    return run.record()


def _underfits(seed: int) -> RunRecord:
    run = Run(seed, epochs=20)
    t, r = run.x, run.rng
    run.train_loss = 1.55 + 0.6 * np.exp(-0.9 * t) + 0.01 * r.standard_normal(t.size)
    run.val_loss = 1.6 + 0.6 * np.exp(-0.9 * t) + 0.02 * r.standard_normal(t.size)
    run.train_acc = 0.42 - 0.25 * np.exp(-0.9 * t) + 0.004 * r.standard_normal(t.size)
    run.val_acc = 0.40 - 0.25 * np.exp(-0.9 * t) + 0.008 * r.standard_normal(t.size)
    s = run.steps / STEPS_PER_EPOCH
    run.step_loss = (1.55 + 0.75 * np.exp(-1.5 * s)) * np.exp(0.1 * r.standard_normal(s.size))
    run.config = _config(optimizer={"weight_decay": 0.05}, model={"dropout": 0.5, "name": "small_cnn", "weights": None})
    return run.record()


def _still_improving(seed: int) -> RunRecord:
    run = Run(seed, epochs=12)
    t, r = run.x, run.rng
    run.val_acc = 0.5 + 0.035 * t + 0.003 * r.standard_normal(t.size)
    run.train_acc = 0.52 + 0.037 * t + 0.002 * r.standard_normal(t.size)
    run.val_loss = 1.6 - 0.09 * t + 0.01 * r.standard_normal(t.size)
    run.train_loss = 1.55 - 0.095 * t + 0.005 * r.standard_normal(t.size)
    run.meta["stop_reason"] = "max_epochs"
    run.config = _config(trainer={"max_epochs": 12})
    return run.record()


def _best_early(seed: int) -> RunRecord:
    run = Run(seed, epochs=36)
    t, r = run.x, run.rng
    peak = 0.91 - 0.4 * np.exp(-0.8 * t)
    run.val_acc = np.where(t <= 6, peak, 0.885) + np.where(t == 6, 0.02, 0.0) + 0.005 * r.standard_normal(t.size)
    run.config = _config(early_stopping={"enabled": False}, trainer={"max_epochs": 36})
    run.meta["stop_reason"] = "max_epochs"
    return run.record()


def _val_turns_up(seed: int) -> RunRecord:
    run = Run(seed, epochs=20)
    t, r = run.x, run.rng
    run.train_loss = (0.02 + 1.2 * np.exp(-0.3 * t)) * (1 + 0.01 * r.standard_normal(t.size))
    run.val_loss = (0.40 + 0.006 * (t - 7) ** 2) * (1 + 0.02 * r.standard_normal(t.size))
    run.val_acc = np.clip(0.86 - 0.3 * np.exp(-0.5 * t) + 0.005 * r.standard_normal(t.size), 0, 1)
    run.train_acc = np.clip(0.995 - 0.5 * np.exp(-0.3 * t), 0, 1)
    return run.record()


def _gap_widens(seed: int) -> RunRecord:
    run = Run(seed, epochs=24)
    t, r = run.x, run.rng
    run.train_loss = (0.02 + 1.0 * np.exp(-0.18 * t)) * (1 + 0.01 * r.standard_normal(t.size))
    run.val_loss = (0.55 + 0.6 * np.exp(-0.5 * t)) * (1 + 0.02 * r.standard_normal(t.size))
    run.train_acc = np.clip(0.995 - 0.5 * np.exp(-0.18 * t), 0, 1)
    run.val_acc = np.clip(0.84 - 0.4 * np.exp(-0.5 * t) + 0.005 * r.standard_normal(t.size), 0, 1)
    return run.record()


def _drifts(seed: int) -> RunRecord:
    run = Run(seed)
    frac = run.tel_steps / run.steps[-1]
    run.drift["backbone.layer4"] = 1.4 * np.sqrt(frac)
    run.drift["backbone.layer3"] = 0.7 * np.sqrt(frac)
    run.config = _config(optimizer={"backbone_lr": 1e-2})
    return run.record()


def _grad_explodes(seed: int) -> RunRecord:
    run = Run(seed)
    s = run.steps / STEPS_PER_EPOCH
    run.grad_norm = run.grad_norm * np.where(s > 12, 10 ** (0.5 * (s - 12)), 1.0)
    return run.record()


def _grad_vanishes(seed: int) -> RunRecord:
    run = _barely_moves_curves(seed)
    s = run.steps / STEPS_PER_EPOCH
    run.grad_norm = 1.5 * 10 ** (-0.4 * s) * np.exp(0.1 * run.rng.standard_normal(s.size))
    run.update_ratio = Run(seed, epochs=15).update_ratio  # normal-sized updates: only the gradients vanish
    return run.record()


def _barely_moves_curves(seed: int) -> Run:
    run = Run(seed, epochs=15)
    t, r = run.x, run.rng
    run.train_loss = 2.15 - 0.004 * t + 0.003 * r.standard_normal(t.size)
    run.val_loss = 2.16 - 0.004 * t + 0.005 * r.standard_normal(t.size)
    run.train_acc = 0.2 + 0.002 * t
    run.val_acc = 0.2 + 0.002 * t
    run.step_loss = 2.3 * np.exp(0.05 * r.standard_normal(run.steps.size))
    return run


def _updates_too_large(seed: int) -> RunRecord:
    run = Run(seed)
    run.update_ratio["head"] = 0.3 * np.exp(0.2 * run.rng.standard_normal(run.tel_steps.size))
    return run.record()


def _updates_too_small(seed: int) -> RunRecord:
    # an LR far too small: the weights barely move and the loss barely falls
    run = Run(seed)
    run.update_ratio = {g: 1e-6 * np.exp(0.2 * run.rng.standard_normal(run.tel_steps.size)) for g in GROUPS}
    run.train_loss = 2.3 - 0.004 * run.x + 0.005 * run.rng.standard_normal(run.x.size)
    run.step_loss = 2.3 * np.exp(0.05 * run.rng.standard_normal(run.steps.size))
    return run.record()


def _val_at_chance(seed: int) -> RunRecord:
    run = Run(seed, epochs=12)
    t, r = run.x, run.rng
    run.val_acc = 0.1 + 0.008 * r.standard_normal(t.size)
    run.val_loss = 2.6 + 0.3 * r.standard_normal(t.size)
    run.config = _config(model={"batchnorm_momentum": 0.0, "weights": None}, trainer={"max_epochs": 12})
    return run.record()


def _decay_overpowers(seed: int) -> RunRecord:
    # SGD at lr 0.5 with an AdamW-scale weight decay: the decay alone pulls 50% per step
    run = Run(seed)
    run.lr = run.lr * 500
    run.config = _config(optimizer={"name": "sgd", "lr": 0.5, "backbone_lr": 0.5, "weight_decay": 0.1, "momentum": 0.9})
    return run.record()


def _slow_from_scratch(seed: int) -> RunRecord:
    """A network trained from scratch with a fine-tuning backbone LR: its backbone moves ~2e-4 per step, val still rising late."""
    run = Run(seed, epochs=20)
    t, r = run.x, run.rng
    run.val_acc = np.clip(0.97 - 0.5 * np.exp(-0.18 * t) + 0.003 * r.standard_normal(t.size), 0, 1)
    run.update_ratio["backbone.layer3"] = run.update_ratio["backbone.layer3"] * 0.5
    run.update_ratio["backbone.layer4"] = run.update_ratio["backbone.layer4"] * 0.5
    run.config = _config(model={"name": "small_cnn", "weights": None}, optimizer={"backbone_lr": 1e-4}, trainer={"max_epochs": 20})
    run.meta["stop_reason"] = "max_epochs"
    return run.record()


def _rebounds(seed: int) -> RunRecord:
    """The loss finds a low level, then climbs 5x above it and stays there, still below where it started."""
    run = Run(seed, epochs=16)
    s = run.steps / STEPS_PER_EPOCH
    level = np.where(s < 6, 0.1 + 2.2 * np.exp(-1.2 * s), 0.1 + 0.45 * (1 - np.exp(-(s - 6))))
    run.step_loss = level * np.exp(0.1 * run.rng.standard_normal(s.size))
    t = run.x
    run.train_loss = np.where(t < 6, 0.1 + 2.2 * np.exp(-1.2 * t), 0.1 + 0.45 * (1 - np.exp(-(t - 6))))
    run.config = _config(scheduler={"name": "constant"}, trainer={"max_epochs": 16})
    return run.record()


def _val_spikes(seed: int) -> RunRecord:
    """A healthy run whose val/loss jumps to 4-6x its neighbours twice and recovers the next epoch each time."""
    run = Run(seed, epochs=20)
    run.val_loss = run.val_loss.copy()
    run.val_loss[7] *= 5.0
    run.val_loss[13] *= 6.0
    return run.record()


def _stuck_at_chance(seed: int) -> RunRecord:
    """A binary classifier whose loss sits at ln 2 and accuracy at 50% throughout; the run does not say how many classes."""
    run = Run(seed, epochs=12)
    t, r = run.x, run.rng
    run.train_loss = 0.6935 + 0.002 * r.standard_normal(t.size)
    run.val_loss = 0.6932 + 0.002 * r.standard_normal(t.size)
    run.train_acc = 0.5 + 0.01 * r.standard_normal(t.size)
    run.val_acc = 0.5 + 0.015 * r.standard_normal(t.size)
    run.step_loss = 0.6935 * np.exp(0.02 * r.standard_normal(run.steps.size))
    del run.meta["num_classes"]
    return run.record()


def _warmup_never_ends(seed: int) -> RunRecord:
    """A warmup as long as the run (the logged LR rises to the very last step)."""
    run = Run(seed, epochs=12)
    run.lr = 1e-3 * run.steps / (40 * STEPS_PER_EPOCH)  # a tenth-of-the-way-up warmup, as a log from another tool shows it
    run.config = _config(scheduler={"warmup_epochs": 11.9}, trainer={"max_epochs": 12})
    return run.record()


def _stalls_at_lr_floor(seed: int) -> RunRecord:
    """A step decay cuts the LR 1000x after epoch 4; the metrics stop moving for the remaining 12 epochs."""
    run = Run(seed, epochs=16)
    t, r = run.x, run.rng
    s = run.steps / STEPS_PER_EPOCH
    run.lr = np.where(s <= 4, 1e-3, 1e-6)
    early = np.minimum(t, 4.0)
    run.train_loss = 0.9 + 0.8 * np.exp(-0.6 * early) + 0.01 * r.standard_normal(t.size)
    run.val_loss = 1.0 + 0.8 * np.exp(-0.6 * early) + 0.015 * r.standard_normal(t.size)
    run.train_acc = 0.7 - 0.3 * np.exp(-0.6 * early) + 0.004 * r.standard_normal(t.size)
    run.val_acc = 0.66 - 0.3 * np.exp(-0.6 * early) + 0.006 * r.standard_normal(t.size)
    run.config = _config(scheduler={"name": "step", "step_size": 4, "gamma": 0.001}, trainer={"max_epochs": 16})
    run.meta["stop_reason"] = "max_epochs"
    return run.record()


SICK = {
    "PD101": _nonfinite,
    "PD102": _explodes,
    "PD103": _spikes,
    "PD104": _oscillates,
    "PD105": _noisy_steps,
    "PD106": _val_oscillates,
    "PD107": _rebounds,
    "PD108": _val_spikes,
    "PD201": _barely_moves,
    "PD202": _underfits,
    "PD203": _still_improving,
    "PD204": _best_early,
    "PD205": _stuck_at_chance,
    "PD206": _slow_from_scratch,
    "PD207": _warmup_never_ends,
    "PD208": _stalls_at_lr_floor,
    "PD301": _val_turns_up,
    "PD302": _gap_widens,
    "PD303": _drifts,
    "PD401": _grad_explodes,
    "PD402": _grad_vanishes,
    "PD403": _updates_too_large,
    "PD404": _updates_too_small,
    "PD405": _decay_overpowers,
    "PD501": _val_at_chance,
}


def sick(code: str, seed: int = 0) -> RunRecord:
    return SICK[code](seed)
