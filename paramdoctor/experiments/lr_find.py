"""The learning-rate range test (Leslie Smith 2015, fastai's ``lr_find``): sweep, record, suggest, plot, apply.

A fresh copy of the model is built exactly as ``paramdoctor train`` builds it
from the config (same data, split, transforms, model and first weights,
optimizer type, parameter groups and weight decay, accumulation, clipping,
label smoothing, AMP), then trained for ``steps`` optimizer steps while the
learning rate grows exponentially from ``start`` to ``end``::

    lr_i = start * (end / start) ** (i / (steps - 1)),   i = 0 .. steps - 1

There is no schedule and no warmup during the sweep. ``lr_i`` is the head's
learning rate; every other group (the backbone) trains at ``lr_i`` times the
ratio the config gives it (``effective_backbone_lr / optimizer.lr``), so the
two groups keep their configured ratio and the sweep multiplies both. The
training loader is cycled (epoch 1, 2, ... with the trainer's own shuffling and
augmentation) for as many steps as the sweep needs. The model and its
optimizer are thrown away afterwards; nothing is saved or resumed.

Each step records the head LR and the training loss of the step (the loss the
optimizer minimises, label smoothing included). The loss is smoothed with an
exponential moving average with bias correction (fastai's ``AvgSmoothLoss``,
``beta`` 0.98 by default)::

    avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,   smoothed_i = avg_i / (1 - beta ** (i + 1))

The sweep stops early on divergence: when the smoothed loss exceeds
``diverge_factor`` (4) times the lowest smoothed loss so far, or when the loss
is not finite (that point is not kept). A sweep of the frozen-backbone phase
(``model.freeze_backbone_epochs``) is not made: every group trains, as after
the unfreeze.

:func:`lr_find` records the sweep as one MLflow run (tag
``paramdoctor.kind=lr_find``; no ``step/`` or ``train/`` series, so it is never
mistaken for a training run): params are the config flattened with dots plus
``lr_find.*``; metrics per step (step = 1-based sweep step) are
``lr_find/lr`` (head), ``lr_find/lr/<group>`` (every named group),
``lr_find/loss`` and ``lr_find/loss_smoothed``; the suggestions are params
``lr_find.suggestion.<picker>`` and metrics ``lr_find/suggestion/<picker>``,
the chosen one ``lr_find/suggested_lr`` and ``lr_find/suggested_backbone_lr``;
tags ``paramdoctor.lr_find.stop_reason`` and ``paramdoctor.lr_find.status``
(``suggested`` or ``no_suggestion``); artifacts ``paramdoctor/lr_find.png`` and
``paramdoctor/lr_find.json`` (:meth:`LrFindResult.to_dict`). Bad input
(config, data, weights, sweep bounds) fails before the run exists.

The pickers that turn the curve into a suggestion are pure functions in
:mod:`paramdoctor.experiments.lr_pickers`. :func:`apply_to_yaml` writes a
suggestion into a config file, atomically, leaving every other byte as it was.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from paramdoctor import __version__, keys
from paramdoctor.config import TrainConfig, dump_yaml, effective_backbone_lr, flatten, to_tree
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.experiments.lr_pickers import DEFAULT_PICKER, PICKERS, Curve, Suggestion, suggest_all

TAG_KIND = "paramdoctor.kind"
KIND = "lr_find"
TAG_STOP_REASON = "paramdoctor.lr_find.stop_reason"
TAG_STATUS = "paramdoctor.lr_find.status"
ARTIFACT_DIR = "paramdoctor"

STOP_COMPLETED = "completed"  # every planned step ran
STOP_DIVERGED = "diverged"  # smoothed loss above diverge_factor x its best
STOP_NONFINITE = "nonfinite_loss"  # the loss became NaN or inf

SUGGESTED, NO_SUGGESTION = "suggested", "no_suggestion"

MIN_STEPS, MAX_STEPS = 20, 10_000  # valley is quadratic in the number of points
MAX_END_LR = 100.0


@dataclass(frozen=True)
class SweepSpec:
    """How the sweep runs: LR range (head LR), number of optimizer steps, smoothing, divergence stop."""

    start: float = 1e-7
    end: float = 10.0
    steps: int = 200
    beta: float = 0.98
    diverge_factor: float = 4.0

    def __post_init__(self) -> None:
        for name in ("start", "end", "beta", "diverge_factor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InputError(f"--{name.replace('_', '-')}: expected a finite number, got {value!r}")
        if not 0 < self.start < self.end:
            raise InputError(f"--start {self.start:g} / --end {self.end:g}: need 0 < start < end (e.g. --start 1e-7 --end 10)")
        if self.end > MAX_END_LR:
            raise InputError(f"--end {self.end:g}: at most {MAX_END_LR:g}; no network trains at a larger learning rate")
        if self.end / self.start < 10:
            raise InputError(f"--start {self.start:g} / --end {self.end:g}: sweep at least one decade (end >= 10 x start)")
        if not (isinstance(self.steps, int) and MIN_STEPS <= self.steps <= MAX_STEPS):
            raise InputError(f"--steps {self.steps}: expected an integer from {MIN_STEPS} to {MAX_STEPS:,} (default 200)")
        if not 0 <= self.beta < 1:
            raise InputError(f"beta {self.beta}: the smoothing factor must lie in [0, 1)")
        if not self.diverge_factor > 1:
            raise InputError(f"diverge_factor {self.diverge_factor}: must be above 1 (default 4)")

    def lr_at(self, i: int) -> float:
        """The head learning rate of sweep step ``i`` (0-based)."""
        return self.start * (self.end / self.start) ** (i / (self.steps - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps, "beta": self.beta,
                "diverge_factor": self.diverge_factor}


@dataclass
class SweepResult:
    """What the sweep recorded: one entry per kept step."""

    lrs: list[float]  # head LR of each step
    losses: list[float]  # raw training loss of each step
    smoothed: list[float]  # bias-corrected EMA of the losses
    stop_reason: str
    steps_planned: int
    ratios: dict[str, float]  # each named group's LR / the head's (head: 1.0)
    device: str
    train_samples: int
    steps_per_epoch: int
    duration_s: float
    nonfinite_at: int | None = None  # 1-based step whose loss was NaN/inf (not kept)

    @property
    def backbone_ratio(self) -> float:
        return self.ratios.get("backbone", 1.0)

    def curve(self) -> Curve:
        return Curve(lrs=self.lrs, losses=self.losses, smoothed=self.smoothed, steps_planned=self.steps_planned)


# --- set-up: everything that can fail on bad input, before any run exists ---------------------------


@dataclass
class _Prepared:
    config: TrainConfig
    device: Any
    amp_dtype: Any
    loaders: Any
    bundle: Any
    model: Any
    optimizer: Any


def prepare(config: TrainConfig) -> _Prepared:
    """Seed, then build device, data, model and optimizer the way ``paramdoctor.training.fit`` does."""

    from paramdoctor.data import build_loaders
    from paramdoctor.data.lineage import split_of_weights
    from paramdoctor.training.fit import model_on_device, resolve_device, resolve_precision, seed_everything

    seed_everything(config.seed)
    device = resolve_device(config.trainer.device)
    amp_dtype = resolve_precision(config.trainer.precision, device)
    loaders = build_loaders(
        config.data,
        seed=config.seed,
        device=device,
        model_name=config.model.name,
        parent_split=split_of_weights(config.model.weights),
        parent_where=f"model.weights={config.model.weights}",
    )
    if len(loaders.train) == 0:
        raise InputError(f"data: the training split of {config.data.dataset} is empty; nothing to sweep on")
    bundle, model, optimizer = model_on_device(config, config.model, loaders, device)
    return _Prepared(config, device, amp_dtype, loaders, bundle, model, optimizer)


def group_ratios(config: TrainConfig) -> dict[str, float]:
    """Each named optimizer group's LR as a multiple of the head's: ``{"backbone": 0.1, "head": 1.0}``."""
    return {"backbone": effective_backbone_lr(config) / config.optimizer.lr, "head": 1.0}


# --- the sweep ----------------------------------------------------------------------------------------


def run_sweep(
    prepared: _Prepared,
    spec: SweepSpec,
    *,
    on_step: Callable[[int, dict[str, float], float, float], None] | None = None,
) -> SweepResult:
    """Train with an exponentially growing LR; stop on divergence. ``on_step(step, lrs, loss, smoothed)``, step 1-based."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    config, model, optimizer, loaders = prepared.config, prepared.model, prepared.optimizer, prepared.loaders
    device = prepared.device
    ratios = group_ratios(config)
    head_lr = config.optimizer.lr
    base = [g["lr"] / head_lr for g in optimizer.param_groups]  # each group's ratio, as the config built it
    accumulate = config.trainer.accumulate_grad_batches
    smoothing = config.trainer.label_smoothing
    scaler = torch.amp.GradScaler(device.type, enabled=prepared.amp_dtype is torch.float16)

    def autocast():
        if prepared.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=prepared.amp_dtype)

    def batches():
        """Accumulation groups of micro-batches, cycling the training loader epoch after epoch."""
        epoch = 0
        while True:
            epoch += 1
            loaders.train.set_epoch(epoch)
            group = []
            for batch in loaders.train:
                group.append(batch)
                if len(group) == accumulate:
                    yield group
                    group = []
            if group:
                yield group

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    stop, nonfinite_at = STOP_COMPLETED, None
    t0 = time.perf_counter()
    model.train()
    if config.model.batchnorm_eval:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    source = batches()
    for i in range(spec.steps):
        # -- set the learning rate: the head's lr_i, every group at its configured ratio of it
        lr = spec.lr_at(i)
        for g, ratio in zip(optimizer.param_groups, base):
            g["lr"] = lr * ratio
        # -- forward, backward over the accumulation group, one update (as fit does)
        group = next(source)
        group_size = sum(y.numel() for _, y in group)
        step_loss = torch.zeros((), device=device, dtype=torch.float32)
        for x, y in group:
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, reduction="sum", label_smoothing=smoothing)
            scaler.scale(loss / group_size).backward()
            step_loss += loss.detach() / group_size
        scaler.unscale_(optimizer)
        if config.trainer.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.trainer.gradient_clip_val)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        # -- record, smooth, and stop on divergence
        value = float(step_loss)
        if not math.isfinite(value):
            stop, nonfinite_at = STOP_NONFINITE, i + 1
            break
        avg = spec.beta * avg + (1 - spec.beta) * value
        smooth = avg / (1 - spec.beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        if on_step is not None:
            on_step(i + 1, {name: lr * r for name, r in ratios.items()}, value, smooth)
        best = min(best, smooth)
        if smooth > spec.diverge_factor * best:
            stop = STOP_DIVERGED
            break
    return SweepResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        stop_reason=stop,
        steps_planned=spec.steps,
        ratios=ratios,
        device=str(device),
        train_samples=loaders.train.num_samples,
        steps_per_epoch=math.ceil(len(loaders.train) / accumulate),
        duration_s=time.perf_counter() - t0,
        nonfinite_at=nonfinite_at,
    )


def sweep(config: TrainConfig, spec: SweepSpec | None = None) -> SweepResult:
    """The sweep alone, with no MLflow run (benchmarks, notebooks)."""
    return run_sweep(prepare(config), spec or SweepSpec())


# --- the recorded experiment ------------------------------------------------------------------------------


def round_lr(lr: float) -> float:
    """A suggestion as people write it: two significant digits (0.0043, 3.1e-05)."""
    return float(f"{lr:.2g}")


@dataclass
class LrFindResult:
    """The sweep, every picker's suggestion, the chosen one, and where it was all recorded."""

    run_id: str
    run_name: str
    experiment: str
    experiment_id: str | None
    tracking_uri: str | None
    config_label: str  # the config file, or "defaults"
    spec: SweepSpec
    sweep: SweepResult
    suggestions: dict[str, Suggestion]
    picker: str
    current_lr: float
    current_backbone_lr: float
    backbone_auto: bool  # optimizer.backbone_lr is null: it follows optimizer.lr by itself
    picture: str | None = None
    applied: dict[str, Any] | None = None

    @property
    def chosen(self) -> Suggestion:
        return self.suggestions[self.picker]

    @property
    def status(self) -> str:
        return SUGGESTED if self.chosen.ok else NO_SUGGESTION

    @property
    def suggested_lr(self) -> float | None:
        return round_lr(self.chosen.lr) if self.chosen.ok else None

    @property
    def suggested_backbone_lr(self) -> float | None:
        lr = self.suggested_lr
        return None if lr is None else float(f"{lr * self.sweep.backbone_ratio:.6g}")

    def to_dict(self) -> dict[str, Any]:
        ratio = self.sweep.backbone_ratio
        suggestions = {}
        for name, s in self.suggestions.items():
            suggestions[name] = {
                "lr": s.lr,
                "backbone_lr": None if s.lr is None else s.lr * ratio,
                "step": None if s.index is None else s.index + 1,
                "reason": s.reason,
            }
        sw = self.sweep
        return {
            "schema_version": 1,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment": self.experiment,
            "config": self.config_label,
            "sweep": {
                **self.spec.to_dict(),
                "steps_run": len(sw.lrs),
                "stop_reason": sw.stop_reason,
                "nonfinite_at": sw.nonfinite_at,
                "last_lr": sw.lrs[-1] if sw.lrs else None,
                "ratios": dict(sw.ratios),
                "device": sw.device,
                "train_samples": sw.train_samples,
                "steps_per_epoch": sw.steps_per_epoch,
                "duration_s": sw.duration_s,
            },
            "suggestions": suggestions,
            "picker": self.picker,
            "status": self.status,
            "suggested_lr": self.suggested_lr,
            "suggested_backbone_lr": self.suggested_backbone_lr,
            "current": {"lr": self.current_lr, "backbone_lr": self.current_backbone_lr, "backbone_auto": self.backbone_auto},
            "picture": self.picture,
            "applied": self.applied,
        }


def check_picker(picker: str) -> str:
    if picker not in PICKERS:
        raise InputError(f"--picker {picker}: unknown picker; choose one of {', '.join(PICKERS)} (default {DEFAULT_PICKER})")
    return picker


def lr_find(
    config: TrainConfig,
    spec: SweepSpec | None = None,
    *,
    picker: str = DEFAULT_PICKER,
    config_label: str = "defaults",
    picture: str | Path | None = "lr_find.png",
    on_step: Callable[[int, int, float], None] | None = None,
    parent_run_id: str | None = None,
) -> LrFindResult:
    """Sweep ``config`` as one MLflow run, suggest with every picker, plot, and log it all.

    ``picture``: where the PNG is also written locally (None: only in the run).
    ``on_step(step, steps, loss)`` hears each step (a progress display).
    Bad input fails before the run exists; Ctrl-C marks the run KILLED.
    """
    from paramdoctor.report import jsonable
    from paramdoctor.tracking import start_run

    spec = spec or SweepSpec()
    check_picker(picker)
    prepared = prepare(config)  # everything that can fail on bad input, before the run exists
    loaders = prepared.loaders
    run_name = f"lr-find-{config.data.dataset}-{config.model.name}-{secrets.token_hex(3)}"
    tags = {
        TAG_KIND: KIND,
        keys.TAG_VERSION: __version__,
        keys.TAG_SOURCE: "paramdoctor",
        keys.TAG_DATASET: loaders.dataset_name,
        keys.TAG_MODEL: config.model.name,
        keys.TAG_NUM_CLASSES: str(loaders.num_classes),
        keys.TAG_TRAIN_SAMPLES: str(loaders.train.num_samples),
        "paramdoctor.device": str(prepared.device),
    }
    if loaders.split is not None:
        tags[keys.TAG_SPLIT] = loaders.split.to_json()
    tree = to_tree(config)
    params = {k: ("null" if v is None else v) for k, v in flatten(tree).items()}
    params.update({f"lr_find.{k}": v for k, v in spec.to_dict().items()})
    params.update({"lr_find.picker": picker, "lr_find.config": config_label})

    with start_run(
        experiment=config.experiment.name,
        run_name=run_name,
        params=params,
        tags=tags,
        artifacts_text={"config.yaml": dump_yaml(tree)},
        parent_run_id=parent_run_id,
        flush_every_s=config.trainer.flush_every_s,
        heartbeat_every_s=config.trainer.heartbeat_every_s,
    ) as run:

        def record(step: int, lrs: dict[str, float], loss: float, smooth: float) -> None:
            metrics = {"lr_find/lr": lrs["head"], "lr_find/loss": loss, "lr_find/loss_smoothed": smooth}
            metrics.update({f"lr_find/lr/{name}": value for name, value in lrs.items()})
            run.sink.log_metrics(metrics, step)
            if on_step is not None:
                on_step(step, spec.steps, loss)

        result_sweep = run_sweep(prepared, spec, on_step=record)
        suggestions = suggest_all(result_sweep.curve())
        result = LrFindResult(
            run_id=run.run_id,
            run_name=run.run_name,
            experiment=config.experiment.name,
            experiment_id=run.experiment_id,
            tracking_uri=run.tracking_uri,
            config_label=config_label,
            spec=spec,
            sweep=result_sweep,
            suggestions=suggestions,
            picker=picker,
            current_lr=config.optimizer.lr,
            current_backbone_lr=effective_backbone_lr(config),
            backbone_auto=config.optimizer.backbone_lr is None,
        )
        run.log_params({f"lr_find.suggestion.{name}": "none" if s.lr is None else f"{s.lr:.6g}" for name, s in suggestions.items()})
        summary = {f"lr_find/suggestion/{name}": s.lr for name, s in suggestions.items() if s.lr is not None}
        if result.suggested_lr is not None:
            summary["lr_find/suggested_lr"] = result.suggested_lr
            summary["lr_find/suggested_backbone_lr"] = result.suggested_backbone_lr
        run.log_metrics(summary, len(result_sweep.lrs))
        run.set_tags({TAG_STOP_REASON: result_sweep.stop_reason, TAG_STATUS: result.status})
        with tempfile.TemporaryDirectory(prefix="paramdoctor-lr-find-") as tmp:
            png = plot_lr_find(result, Path(tmp) / "lr_find.png", title=f"lr-find {config_label}: {run_name}")
            run.log_artifact(str(png), artifact_path=ARTIFACT_DIR)
            if picture is not None:
                local = Path(picture)
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(png.read_bytes())
                result.picture = str(local)
        payload = result.to_dict()
        run.log_text(json.dumps(jsonable(payload), indent=2, allow_nan=False), f"{ARTIFACT_DIR}/lr_find.json")
    return result


# --- the picture -------------------------------------------------------------------------------------------

_COLOURS = {"robust": "#d62728", "valley": "#2ca02c", "steepest": "#ff7f0e", "minimum": "#9467bd"}


def plot_lr_find(result: LrFindResult, path: str | Path, *, title: str | None = None, dpi: int = 100) -> Path:
    """Loss against LR (log x): raw, EMA-smoothed, the robust picker's smooth curve, a marker per picker, the choice highlighted."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from paramdoctor.experiments.lr_pickers import robust_smooth

    path = Path(path)
    fig = Figure(figsize=(9.0, 5.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=0.89)  # fixed margins: constrained layout costs a second
    sw = result.sweep
    lrs = np.asarray(sw.lrs, dtype=float)
    raw = np.asarray(sw.losses, dtype=float)
    ema_curve = np.asarray(sw.smoothed, dtype=float)
    if len(lrs) == 0:
        ax.text(0.5, 0.5, "no step of the sweep had a finite loss", ha="center", va="center", transform=ax.transAxes)
        fig.savefig(path, format="png")
        return path
    ax.plot(lrs, raw, color="#1f77b4", alpha=0.3, linewidth=0.8, label="loss per step (raw)")
    ax.plot(lrs, ema_curve, color="#1f77b4", linewidth=1.6, label=f"EMA, beta {result.spec.beta:g} (lags)")
    r_lrs, r_smooth, _ = robust_smooth(sw.curve())
    ax.plot(r_lrs, r_smooth, color="#444444", linestyle="--", linewidth=1.2, label="zero-phase smooth (robust)")
    curves = {"robust": (r_lrs, r_smooth)}
    for name, s in result.suggestions.items():
        if s.lr is None:
            continue
        xs, ys = curves.get(name, (lrs, ema_curve))
        y = float(np.interp(np.log10(s.lr), np.log10(xs), ys))
        chosen = name == result.picker
        ax.plot([s.lr], [y], marker="*" if chosen else "o", markersize=16 if chosen else 8, linestyle="none",
                color=_COLOURS.get(name, "black"), markeredgecolor="black" if chosen else "none", zorder=5,
                label=f"{name}: {s.lr:.2g}" + ("  (chosen)" if chosen else ""))
        if chosen:
            ax.axvline(s.lr, color=_COLOURS.get(name, "black"), linestyle=":", linewidth=1.2)
    ax.set_xscale("log")
    finite = raw[np.isfinite(raw)]
    start_level = float(np.median(finite[: max(5, len(finite) // 20)]))
    low = float(min(np.min(r_smooth), np.min(finite)))
    high = max(start_level * 1.4, float(np.max(ema_curve[: int(np.argmin(ema_curve)) + 1])) * 1.1)
    ax.set_ylim(max(0.0, low - 0.05 * (high - low)) if low >= 0 else low, high)
    ax.set_xlabel("learning rate (head)" + (f"; backbone at x{sw.backbone_ratio:g}" if sw.backbone_ratio != 1 else ""))
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    stop = {STOP_COMPLETED: "all steps ran", STOP_DIVERGED: "stopped: diverged",
            STOP_NONFINITE: "stopped: non-finite loss"}.get(sw.stop_reason, sw.stop_reason)
    ax.set_title(f"{title or 'lr-find'}\n{len(lrs)} of {sw.steps_planned} steps, {stop}", fontsize=10)
    fig.savefig(path, format="png")
    return path


# --- --apply: the suggestion into the config file -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    key: str
    old: str  # as the file had it ("-" when absent)
    new: str  # as written, or what an auto value now resolves to
    written: bool  # False: the file keeps its text (an auto value that follows by itself)


def yaml_number(value: float) -> str:
    """``0.0043``, ``4.3e-05``, ``1.0e-05``: short, and a float to every YAML reader (a dot in the mantissa)."""
    text = f"{value:.6g}"
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def apply_to_yaml(path: str | Path, lr: float, backbone_lr: float | None, *, config: TrainConfig) -> list[Change]:
    """Write ``optimizer.lr`` (and ``optimizer.backbone_lr`` unless None: auto) into the YAML file ``path``.

    Only the value text of those keys changes (a missing key is added to the
    ``optimizer`` section, a missing section at the end); comments, order and
    every other byte stay. The result is re-read and must equal the old config
    with only those keys changed, else nothing is written. The file is replaced
    atomically (a temporary file beside it, flushed, renamed over it).
    """
    from paramdoctor.config.loading import load_yaml_text, read_config_file

    path = Path(path).resolve()
    raw_bytes = path.read_bytes()
    bom = raw_bytes.startswith(b"\xef\xbb\xbf")
    text = raw_bytes.decode("utf-8-sig")
    old_tree = read_config_file(path)
    updates = {"lr": lr}
    if backbone_lr is not None:
        updates["backbone_lr"] = backbone_lr
    old_section = old_tree.get("optimizer") if isinstance(old_tree.get("optimizer"), dict) else {}
    new_text = _edit_optimizer(text, {k: yaml_number(v) for k, v in updates.items()}, str(path))

    # -- check: the new file reads as the old config with only these keys changed
    expected = flatten(old_tree)
    for key, value in updates.items():
        expected[f"optimizer.{key}"] = value
    try:
        got = flatten(load_yaml_text(new_text, str(path)) or {})
    except ConfigError:
        got = None
    if got != expected:
        raise ConfigError(
            f"{path}: could not rewrite optimizer.lr safely (anchors, aliases or an unusual layout); "
            f"set optimizer.lr: {yaml_number(lr)}" + (f" and optimizer.backbone_lr: {yaml_number(backbone_lr)}" if backbone_lr is not None else "")
            + " by hand"
        )
    _atomic_write(path, new_text.encode("utf-8"), bom=bom)

    changes = [Change("optimizer.lr", _shown(old_section, "lr"), yaml_number(lr), True)]
    if backbone_lr is not None:
        changes.append(Change("optimizer.backbone_lr", _shown(old_section, "backbone_lr"), yaml_number(backbone_lr), True))
    else:
        auto = effective_backbone_lr(config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"lr": lr})}))
        changes.append(Change("optimizer.backbone_lr", "null (auto)", f"null (auto): now resolves to {yaml_number(auto)}", False))
    return changes


def _shown(section: dict[str, Any], key: str) -> str:
    if key not in section:
        return "-"
    value = section[key]
    return "null" if value is None else yaml_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _edit_optimizer(text: str, values: dict[str, str], where: str) -> str:
    """``text`` with ``optimizer.<key>`` set to each value text, found through the YAML node positions."""
    import yaml

    from paramdoctor.config.loading import _Loader

    newline = "\r\n" if "\r\n" in text else "\n"
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    block = "".join(f"{newline}  {k}: {v}" for k, v in values.items())
    if root is None:  # an empty file (or comments only)
        sep = "" if not text or text.endswith(("\n", "\r")) else newline
        return f"{text}{sep}optimizer:{block}{newline}"
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{where}: a config file must be a mapping of sections")
    section = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "optimizer"), None)
    if section is None:
        sep = "" if text.endswith(("\n", "\r")) else newline
        return f"{text}{sep}optimizer:{block}{newline}"
    if isinstance(section, yaml.ScalarNode):  # `optimizer:` with no value, or `optimizer: null`
        start, end = section.start_mark.index, section.end_mark.index
        if start == end:  # nothing written after the colon: the keys go on the lines below
            return text[:start] + block + text[end:]
        return text[:start] + "{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}" + text[end:]
    if not isinstance(section, yaml.MappingNode):
        raise ConfigError(f"{where}: optimizer must be a mapping of keys")
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), applied from the end
    missing: dict[str, str] = {}
    for key, value in values.items():
        node = next((v for k, v in section.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if node is None:
            missing[key] = value
        elif isinstance(node, yaml.ScalarNode):
            edits.append((node.start_mark.index, node.end_mark.index, value))
        else:
            raise ConfigError(f"{where}: optimizer.{key} is not a single value; set it by hand")
    if missing:
        if section.flow_style:
            close = section.end_mark.index - 1  # the closing brace
            lead = ", " if section.value else ""
            edits.append((close, close, lead + ", ".join(f"{k}: {v}" for k, v in missing.items())))
        else:
            first_key = section.value[0][0] if section.value else None
            indent = " " * (first_key.start_mark.column if first_key is not None else 2)
            last = _last_leaf(section.value[-1][1]) if section.value else section
            end_of_line = text.find("\n", last.end_mark.index)
            if end_of_line < 0:
                at, lead = len(text), newline
            else:
                at, lead = end_of_line + 1, ""
            lines = "".join(f"{indent}{k}: {v}{newline}" for k, v in missing.items())
            edits.append((at, at, lead + lines))
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _last_leaf(node):
    """The last scalar inside ``node``: a block collection's own end mark can lie past comments and blank lines."""
    import yaml

    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node


def _atomic_write(path: Path, data: bytes, *, bom: bool = False) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same folder, flushed, renamed over it, the folder flushed."""
    if bom:
        data = b"\xef\xbb\xbf" + data
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def check_apply_target(path: str | Path) -> Path:
    """Before anything runs: the config file ``--apply`` will rewrite exists and can be replaced."""
    path = Path(path)
    resolved = path.resolve()
    if not resolved.is_file():
        raise InputError(f"--apply: {path} is not a file; give the config YAML to rewrite")
    if not os.access(resolved, os.R_OK) or not os.access(resolved.parent, os.W_OK | os.X_OK):
        raise InputError(f"--apply: cannot rewrite {path} (its folder {resolved.parent} is not writable); copy it somewhere writable")
    return resolved
