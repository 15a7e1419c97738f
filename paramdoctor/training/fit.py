"""The fit loop: one best-practice fine-tuning run, instrumented, recorded in MLflow.

Read it top to bottom: set up (seed, device, data, model, optimizer, schedule),
open the MLflow run, then per epoch: train with gradient accumulation, clipping
and AMP, evaluate, early-stop; finally restore the best weights and log the
checkpoint. Everything the doctor needs is recorded through the public hooks
API (``paramdoctor.hooks``), exactly as a user's own loop would record it.

Every epoch ends with the metrics stored (or spooled) and then ``last.pt``
written atomically (``paramdoctor.training.checkpoint``), in that order: a
run killed at any moment, even by SIGKILL, can be resumed from its last
complete epoch (``resume``), and the replayed part of an epoch logs no
duplicate step (the tracking layer drops steps the run already holds).

Bad input (config, data, weights) fails before any MLflow run exists, so there
is never a half-written run.

Under ``torchrun`` (:mod:`paramdoctor.training.distributed`) the same loop
trains with DistributedDataParallel: each rank takes its share of every
epoch's global batches, the sums behind a logged metric are added over the
ranks first, and rank 0 alone opens the MLflow run (the others learn its id),
writes the checkpoints and decides when to stop; the other ranks obey.

A caller that trains many runs (``tune``) can end one early and in order: its
listener raises :class:`StopTraining` from ``on_epoch_end`` (a pruned trial),
and ``metric_tap`` receives every metric the monitor logs, in process, so the
caller can judge the partial curves without reading them back from MLflow.
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import tempfile
import time
import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from paramdoctor import __version__, keys
from paramdoctor.config import TrainConfig, dump_yaml, flatten, to_tree
from paramdoctor.errors import InputError
from paramdoctor.training import distributed
from paramdoctor.training.checkpoint import CheckpointDir, cpu_state_dict, rng_state, set_rng_state
from paramdoctor.training.early_stopping import EarlyStopping
from paramdoctor.training.optim import build_optimizer
from paramdoctor.training.schedule import build_scheduler

if TYPE_CHECKING:
    from paramdoctor.hooks import MetricSink

STOP_EARLY = "early_stopping"
STOP_MAX_EPOCHS = "max_epochs"
STOP_NONFINITE = "nonfinite_loss"
STOP_INTERRUPTED = "interrupted"
STOP_PRUNED = "pruned"


@dataclass
class FitResult:
    """What a finished (or failed) fit produced."""

    run_id: str
    experiment: str
    run_name: str | None
    status: str  # FINISHED, FAILED, KILLED
    stop_reason: str
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    monitor: str
    duration_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    failure: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    checkpoint_dir: str | None = None  # where last.pt and best.pt are (train --resume)
    resumed_from_epoch: int | None = None  # the last complete epoch this process started from
    spooled: int = 0  # metric points still on local disk because the tracking server was away (paramdoctor sync)


class FitListener(Protocol):
    """Progress callbacks for a display; every method is optional to implement meaningfully."""

    def on_fit_start(self, *, total_epochs: int, steps_per_epoch: int, run_id: str, device: str) -> None: ...

    def on_step(self, *, epoch: int, step_in_epoch: int, loss: torch.Tensor, lr: float) -> None:
        """``loss`` is a 0-dim tensor, possibly on the GPU: convert it only when the display refreshes."""

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float], improved: bool) -> None: ...


class StopTraining(Exception):
    """Raised by a listener to end the run early, in order (a pruned trial).

    From ``on_epoch_end`` the epoch is complete: its metrics are stored and its
    checkpoint written first. Then the run ends like an early-stopped one: the
    best weights restored and ``checkpoints/best.pt`` logged, ``tags`` set on
    the run, status FINISHED and stop reason ``reason``. Raised from ``on_step``
    the epoch in progress is cut short (the checkpoint is the last complete
    epoch's). A non-finite loss still wins: that run ends FAILED with stop
    reason ``nonfinite_loss``, as without a listener.
    """

    def __init__(self, reason: str = STOP_PRUNED, message: str = "", tags: dict[str, str] | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message
        self.tags = dict(tags or {})


class _TrainingFailed(Exception):
    """Ends the MLflow run as FAILED after everything was logged (a diverged run)."""


class _Silent:
    def on_fit_start(self, **_: Any) -> None:
        pass

    def on_step(self, **_: Any) -> None:
        pass

    def on_epoch_end(self, **_: Any) -> None:
        pass


# --- set-up helpers -------------------------------------------------------------


def model_on_device(config: TrainConfig, model_cfg: Any, loaders: Any, device: torch.device) -> tuple[Any, nn.Module, Any]:
    """(bundle, model on ``device``, optimizer) as ``fit`` builds them; lr-find builds its copy the same way.

    ``model_cfg`` is ``config.model`` or a variant of it (a resumed run does not load its first weights again).
    """
    from paramdoctor.models import build_model

    bundle = build_model(
        model_cfg, num_classes=loaders.num_classes, in_channels=loaders.in_channels, image_size=loaders.image_size
    )
    model = bundle.model.to(device)
    if config.model.batchnorm_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = config.model.batchnorm_momentum
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, bundle.param_groups, fused=device.type == "cuda")
    return bundle, model, optimizer


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"trainer.device={name}: CUDA is not available on this machine (use trainer.device=auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"trainer.device={name}: MPS is not available on this machine (use trainer.device=auto or cpu)")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if device.type != "cuda":
        if precision in ("16-mixed", "bf16-mixed"):
            raise InputError(f"trainer.precision={precision} needs CUDA; this run is on {device.type} (use precision=auto or 32)")
        return None
    if precision == "32":
        return None
    if precision == "16-mixed":
        return torch.float16
    if precision == "bf16-mixed" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _set_backbone_trainable(param_groups: dict[str, list[nn.Parameter]], trainable: bool) -> None:
    for name, params in param_groups.items():
        if name != "head":
            for p in params:
                p.requires_grad_(trainable)


def _freeze_batchnorm(model: nn.Module) -> None:
    """Put BatchNorm layers in eval mode: running statistics stay as they were."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


# --- one epoch ------------------------------------------------------------------


def _evaluate(
    model: nn.Module, loader, autocast, world: distributed.World = distributed.SINGLE, device: torch.device | None = None
) -> tuple[float, float]:
    """(mean loss, accuracy) over the validation set: each rank's share, summed over the ranks."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    seen = 0
    with torch.no_grad():
        for x, y in loader:
            with autocast():
                logits = model(x)
            loss_sum = loss_sum + F.cross_entropy(logits.float(), y, reduction="sum").double().cpu()
            correct = correct + (logits.argmax(1) == y).sum().cpu()
            seen += y.numel()
    if world.is_distributed:
        # on the training device: its tensors travel by NCCL between GPUs, by gloo between CPUs
        loss_sum, correct, seen = _summed(world, loss_sum, correct, seen, device or torch.device("cpu"))
    if seen == 0:
        return float("nan"), float("nan")
    return float(loss_sum) / seen, float(correct) / seen


def _summed(world: distributed.World, loss_sum, correct, seen, device: torch.device) -> tuple[float, int, int]:
    """A loss sum, a correct count and a sample count, each added up over the ranks (exact in float64)."""
    totals = torch.stack(
        [torch.as_tensor(loss_sum, dtype=torch.float64).detach().reshape(()).to(device),
         torch.as_tensor(correct).detach().reshape(()).to(device, torch.float64),
         torch.tensor(float(seen), dtype=torch.float64, device=device)]
    )
    world.sum_(totals)
    loss, right, count = totals.tolist()
    return loss, int(round(right)), int(round(count))


def _chunks(iterable, size: int):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- the loop ---------------------------------------------------------------------


def fit(
    config: TrainConfig,
    *,
    listener: FitListener | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    resume_from: ResumePoint | None = None,
    on_tracking_event: Callable[[Any], None] | None = None,
    metric_tap: MetricSink | None = None,
) -> FitResult:
    """Train ``config`` and record it as one MLflow run. Returns the run's outcome.

    A non-finite loss ends the run early with status FAILED and stop reason
    ``nonfinite_loss``: a diverged run is still a complete specimen for the doctor.
    ``resume_from`` (see :func:`paramdoctor.training.resume.resume`) continues
    an interrupted run in the same MLflow run from its last complete epoch.
    ``on_tracking_event`` hears, once each, that the tracking server went away
    or came back (``paramdoctor.tracking.sink.TrackingEvent``); by default
    those lines go to the log. ``metric_tap`` (a ``paramdoctor.hooks.MetricSink``,
    e.g. ``MemorySink``) also receives every metric the monitor logs. A listener
    may raise :class:`StopTraining` to end the run early (stop reason ``pruned``).
    """
    from paramdoctor.data import build_loaders
    from paramdoctor.data.lineage import split_of_weights
    from paramdoctor.hooks import FanoutSink, NonFiniteLossError, TrainingMonitor

    listener = listener or _Silent()
    world = distributed.current()
    t_start = time.perf_counter()
    # named before seeding: MLflow's own name generator draws from the seeded `random`,
    # which would give every run of the same seed the same name
    run_name = config.experiment.run_name or f"{config.data.dataset}-{config.model.name}-{secrets.token_hex(3)}"
    if world.is_distributed:  # every rank names the run the same; rank 0's name is the one MLflow gets
        run_name = world.broadcast(run_name)

    # -- set-up: everything that can fail on bad input happens before the run exists
    seed_everything(config.seed)
    device = world.device(resolve_device(config.trainer.device))
    amp_dtype = resolve_precision(config.trainer.precision, device)
    if resume_from is None:
        data_cfg, model_cfg = config.data, config.model
        parent_split = split_of_weights(config.model.weights)
    else:
        # the same split as before, without asking where the first weights came from again
        data_cfg = config.data.model_copy(update={"split_seed": resume_from.split.seed})
        model_cfg = config.model.model_copy(update={"weights": None})
        parent_split = None
    loaders = build_loaders(
        data_cfg,
        seed=config.seed,
        device=device,
        model_name=config.model.name,
        parent_split=parent_split,
        parent_where=f"model.weights={config.model.weights}",
        rank=world.rank,
        world_size=world.size if world.is_distributed else 1,
    )
    if resume_from is not None and loaders.split != resume_from.split:
        raise InputError(
            f"cannot resume run {resume_from.run_id}: its data changed since it started "
            f"(split {resume_from.split.to_json()}, now {loaders.split.to_json() if loaders.split else None}); start a new run"
        )
    bundle, model, optimizer = model_on_device(config, model_cfg, loaders, device)
    if world.is_distributed:
        if device.type == "cuda":
            # one set of BatchNorm statistics over the job's batch, as a single process computes them
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if world.rank:
            torch.manual_seed(config.seed + world.rank)  # dropout masks of their own; the weights are rank 0's (DDP)
    accumulate = config.trainer.accumulate_grad_batches
    steps_per_epoch = math.ceil(len(loaders.train) / accumulate)
    total_steps = steps_per_epoch * config.trainer.max_epochs
    scheduler = build_scheduler(config.scheduler, optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

    def autocast():
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    es_cfg = config.early_stopping
    stopper = EarlyStopping(monitor=es_cfg.monitor, mode=es_cfg.mode, patience=es_cfg.patience, min_delta=es_cfg.min_delta)
    tree = to_tree(config)
    split_json = loaders.split.to_json() if loaders.split else None
    tags = {
        keys.TAG_VERSION: __version__,
        keys.TAG_DATASET: loaders.dataset_name,
        keys.TAG_MODEL: config.model.name,
        keys.TAG_NUM_CLASSES: str(loaders.num_classes),
        keys.TAG_MONITOR: es_cfg.monitor,
        keys.TAG_MODE: es_cfg.mode,
        keys.TAG_SOURCE: "paramdoctor",
        "paramdoctor.device": str(device),
        keys.TAG_STEPS_PER_EPOCH: str(steps_per_epoch),
        keys.TAG_TRAIN_SAMPLES: str(loaders.train.num_samples),
        **(extra_tags or {}),
    }
    if world.backend is not None:
        tags[keys.TAG_WORLD_SIZE] = str(world.size)
        tags[keys.TAG_DIST_BACKEND] = distributed.backend_for(device)
    if split_json:
        tags[keys.TAG_SPLIT] = split_json
    if getattr(bundle, "weights_report", None):
        tags["paramdoctor.weights"] = str(config.model.weights)
    params = {k: ("null" if v is None else v) for k, v in flatten(tree).items()}

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    stop_reason = STOP_MAX_EPOCHS
    first_epoch = 1
    frozen = config.model.freeze_backbone_epochs > 0
    if resume_from is not None:
        state = resume_from.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        stopper.load_state_dict(state["early_stopping"])
        history = [dict(row) for row in state["history"]]
        first_epoch = int(state["epoch"]) + 1
        if es_cfg.restore_best_weights and world.is_main:
            best_state = state.get("best_model")
            if best_state is None and stopper.best_epoch == state["epoch"]:
                best_state = cpu_state_dict(model)  # the last epoch was the best: saved once, as the model
        frozen = frozen and first_epoch <= config.model.freeze_backbone_epochs
    epoch = first_epoch - 1
    failure: str | None = None
    status = "FINISHED"
    checkpoints: CheckpointDir | None = None

    stack = ExitStack()
    if resume_from is not None and world.is_main:
        # taken before the run is reopened: a trainer still at work on it keeps it, untouched
        checkpoints = CheckpointDir(resume_from.checkpoint_root, resume_from.run_id)
        stack.callback(CheckpointDir.unlock, checkpoints.lock())
    try:
        with stack, _open_run(
            world,
            experiment=config.experiment.name,
            run_name=run_name,
            params=params,
            tags=tags,
            artifacts_text={"config.yaml": dump_yaml(tree)} if resume_from is None else None,
            parent_run_id=parent_run_id,
            flush_every_s=config.trainer.flush_every_s,
            heartbeat_every_s=config.trainer.heartbeat_every_s,
            resume_run_id=None if resume_from is None else resume_from.run_id,
            on_tracking_event=on_tracking_event,
        ) as run:
            if resume_from is None and world.is_main:
                checkpoints = CheckpointDir(config.trainer.checkpoint_dir, run.run_id)
                # held until the run is closed or this process dies: liveness on this machine
                stack.callback(CheckpointDir.unlock, checkpoints.lock())
                run.set_tags({keys.TAG_CHECKPOINT_DIR: str(checkpoints.path)})
            monitor = TrainingMonitor(
                optimizer,
                run.sink if metric_tap is None else FanoutSink(run.sink, metric_tap),
                model=model,
                layer_groups=bundle.layer_groups,
                log_every_n_steps=config.trainer.log_every_n_steps,
                telemetry_every_n_steps=config.trainer.telemetry_every_n_steps,
                on_nonfinite="raise" if config.trainer.stop_on_nonfinite else "record",
                grad_scaler=scaler if scaler.is_enabled() else None,  # fp16 overflow steps the scaler skips are no divergence
            )
            listener.on_fit_start(
                total_epochs=config.trainer.max_epochs, steps_per_epoch=steps_per_epoch, run_id=run.run_id, device=str(device)
            )
            if resume_from is None:
                monitor.before_fit()
            else:
                monitor.load_state_dict(resume_from.state["monitor"])
                # last: the RNG streams continue exactly where the checkpoint left them
                set_rng_state(_rng_of_rank(resume_from.state, world))
            if frozen:
                _set_backbone_trainable(bundle.param_groups, False)
            net = _data_parallel(model, world, device)  # what the training forward runs through

            def save_checkpoint(epoch: int, improved: bool) -> None:
                """Metrics first, then the checkpoint: a checkpoint never runs ahead of what the run holds."""
                ranks_rng = world.gather(rng_state()) if world.is_distributed else None
                if not world.is_main:
                    return  # written once, by rank 0, with every rank's RNG streams
                run.flush()
                current = cpu_state_dict(model)
                if improved:
                    checkpoints.save_best(current, epoch=epoch, split=_split_dict(loaders))
                checkpoints.save_last(
                    {
                        "epoch": epoch,
                        "model": current,
                        "best_model": None if improved or best_state is None else best_state,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                        "early_stopping": stopper.state_dict(),
                        "monitor": monitor.state_dict(),
                        "rng": rng_state(),
                        "rng_ranks": ranks_rng,
                        "history": history,
                        "split": _split_dict(loaders),
                        "config": tree,
                    }
                )

            if resume_from is None:
                # epoch 0: a run killed before its first epoch ends can still be carried on
                save_checkpoint(0, False)

            try:
                for epoch in range(first_epoch, config.trainer.max_epochs + 1):
                    t_epoch = time.perf_counter()
                    if frozen and epoch > config.model.freeze_backbone_epochs:
                        _set_backbone_trainable(bundle.param_groups, True)
                        frozen = False
                        net = _data_parallel(model, world, device)  # DDP learns the parameters it syncs when built
                    loaders.train.set_epoch(epoch)

                    # -- train: forward, backward over the accumulation group, then one update
                    model.train()
                    if config.model.batchnorm_eval:
                        _freeze_batchnorm(model)
                    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
                    correct = torch.zeros((), device=device, dtype=torch.int64)
                    seen = 0
                    for step_in_epoch, group in enumerate(_chunks(loaders.train, accumulate), start=1):
                        group_size = sum(y.numel() for _, y in group)
                        step_loss = torch.zeros((), device=device, dtype=torch.float32)
                        for micro, (x, y) in enumerate(group, start=1):
                            # DDP averages gradients over the ranks once per update, at the group's last backward
                            with nullcontext() if micro == len(group) or net is model else net.no_sync():
                                with autocast():
                                    logits = net(x)
                                    loss = F.cross_entropy(
                                        logits.float(), y, reduction="sum", label_smoothing=config.trainer.label_smoothing
                                    )
                                # every sample weighs the same, however the group splits into micro-batches
                                scaler.scale(loss / group_size).backward()
                            with torch.no_grad():
                                plain = loss if config.trainer.label_smoothing == 0 else F.cross_entropy(
                                    logits.float(), y, reduction="sum"
                                )
                                step_loss += loss.detach() / group_size
                                loss_sum += plain.detach().double()
                                correct += (logits.argmax(1) == y).sum()
                            seen += y.numel()
                        world.mean_(step_loss)  # the job's loss: every rank logs, checks and shows the same number
                        scaler.unscale_(optimizer)
                        monitor.after_backward()  # global grad norm, before clipping
                        if config.trainer.gradient_clip_val is not None:
                            torch.nn.utils.clip_grad_norm_(model.parameters(), config.trainer.gradient_clip_val)
                        scaler.step(optimizer)
                        scaler.update()
                        monitor.after_step(step_loss)  # loss, LR of every group, telemetry
                        optimizer.zero_grad(set_to_none=True)
                        scheduler.step()
                        listener.on_step(epoch=epoch, step_in_epoch=step_in_epoch, loss=step_loss, lr=optimizer.param_groups[-1]["lr"])

                    if world.is_distributed:
                        train_sum, train_correct, seen = _summed(world, loss_sum, correct, seen, device)
                    else:
                        train_sum, train_correct = float(loss_sum), float(correct)
                    train_loss = train_sum / max(seen, 1)
                    train_acc = train_correct / max(seen, 1)

                    # -- evaluate (every rank with rank 0's BatchNorm statistics: one model, as checkpointed)
                    world.broadcast_buffers(model)
                    val_loss, val_acc = _evaluate(model, loaders.val, autocast, world, device)
                    elapsed = time.perf_counter() - t_epoch
                    metrics = {
                        keys.TRAIN_LOSS: train_loss,
                        keys.TRAIN_ACC: train_acc,
                        keys.VAL_LOSS: val_loss,
                        keys.VAL_ACC: val_acc,
                        keys.EPOCH_TIME: elapsed,
                        keys.EPOCH_THROUGHPUT: seen / elapsed if elapsed > 0 else 0.0,
                    }
                    for g in optimizer.param_groups:
                        metrics[keys.epoch_lr(g.get("name", "default"))] = g["lr"]
                    monitor.after_epoch(epoch, metrics)
                    history.append({"epoch": epoch, **metrics})

                    # -- early stopping: keep the best weights, stop when patience runs out
                    improved = stopper.update(epoch, metrics[es_cfg.monitor])
                    stop_request: StopTraining | None = None
                    try:
                        listener.on_epoch_end(epoch=epoch, metrics=metrics, improved=improved)
                    except StopTraining as exc:
                        stop_request = exc  # after the checkpoint: the epoch is complete
                    should_stop = es_cfg.enabled and stopper.should_stop
                    if world.is_distributed:  # rank 0 decides; every rank does what it decided
                        improved, should_stop, stop_request = _decided_on_main(world, improved, should_stop, stop_request)
                    if improved and es_cfg.restore_best_weights and world.is_main:
                        best_state = cpu_state_dict(model)
                    if config.trainer.stop_on_nonfinite and not math.isfinite(train_loss):
                        raise NonFiniteLossError(f"train/loss is {train_loss} at epoch {epoch}")
                    save_checkpoint(epoch, improved)
                    if stop_request is not None:
                        raise stop_request
                    if should_stop:
                        stop_reason = STOP_EARLY
                        break
            except NonFiniteLossError as exc:
                stop_reason, status, failure = STOP_NONFINITE, "FAILED", str(exc)
            except StopTraining as exc:
                stop_reason = exc.reason
                run.set_tags(exc.tags)
            except KeyboardInterrupt:
                if world.is_main:
                    _finish(run, model, best_state, stopper, STOP_INTERRUPTED, es_cfg.restore_best_weights, loaders, history)
                raise

            if world.is_main:
                _finish(run, model, best_state, stopper, stop_reason, es_cfg.restore_best_weights, loaders, history)
            monitor.after_fit()
            if failure:
                # leaving the run through an exception marks it FAILED with this reason
                raise _TrainingFailed(failure)
    except _TrainingFailed:
        pass  # recorded as FAILED with the reason; the result below says the same

    return FitResult(
        run_id=run.run_id,
        experiment=config.experiment.name,
        run_name=run.run_name,
        status=status,
        stop_reason=stop_reason,
        epochs_run=epoch if history else 0,
        best_epoch=stopper.best_epoch,
        best_value=stopper.best,
        monitor=es_cfg.monitor,
        duration_s=time.perf_counter() - t_start,
        history=history,
        failure=failure,
        experiment_id=run.experiment_id,
        tracking_uri=run.tracking_uri,
        checkpoint_dir=str(checkpoints.path) if checkpoints else None,
        resumed_from_epoch=None if resume_from is None else first_epoch - 1,
        spooled=int(getattr(run, "spooled", 0) or 0),
    )


@dataclass(frozen=True)
class ResumePoint:
    """An interrupted run and the state its ``last.pt`` holds."""

    run_id: str
    state: dict[str, Any]
    split: Any  # paramdoctor.data.lineage.SplitRecord
    checkpoint_root: str  # the run's checkpoints are in CHECKPOINT_ROOT/<run_id>/


def _split_dict(loaders) -> dict | None:
    from dataclasses import asdict

    return asdict(loaders.split) if loaders.split is not None else None


def _finish(
    run, model: nn.Module, best_state, stopper: EarlyStopping, stop_reason: str, restore: bool, loaders, history: list
) -> None:
    """Restore the best weights, log the checkpoint, the summary metrics and the stop reason."""
    if restore and best_state is not None:
        model.load_state_dict(best_state)
    state = best_state if best_state is not None else cpu_state_dict(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pt"
        # the split travels with the weights: a run that starts from them must not validate on their training samples
        torch.save({"model": copy.copy(state), "split": _split_dict(loaders)}, path)
        run.log_artifact(str(path), artifact_path="checkpoints")
    summary = {}
    if stopper.best_epoch is not None:
        summary = {keys.BEST_EPOCH: float(stopper.best_epoch), keys.BEST_VALUE: float(stopper.best)}
    if summary:
        # at the last complete epoch, through the step guard: a run stopped twice at the same epoch logs it once
        run.sink.log_metrics(summary, int(history[-1]["epoch"]) if history else 0)
    run.set_tags({keys.TAG_STOP_REASON: stop_reason})


# --- a torchrun job -----------------------------------------------------------------


class _DiscardSink:
    """Where the monitor of a rank other than 0 logs: nowhere (rank 0 logs the job's numbers)."""

    spooled = 0

    def log(self, key: str, value: float, step: int) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int, **_: Any) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class _FollowerRun:
    """The MLflow run as a rank other than 0 sees it: rank 0's ids, and no writes."""

    run_id: str
    run_name: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    sink: _DiscardSink = field(default_factory=_DiscardSink)
    spooled: int = 0

    def set_tags(self, tags: Any) -> None:
        pass

    def log_artifact(self, *_: Any, **__: Any) -> None:
        pass

    def flush(self) -> None:
        pass


@contextmanager
def _open_run(world: distributed.World, **kwargs: Any) -> Iterator[Any]:
    """``start_run(**kwargs)`` on rank 0; on the other ranks the same run's ids (one MLflow run per job).

    Rank 0 failing to open the run (a tracking server that refuses it) stops
    every rank with its error instead of leaving them waiting.
    """
    from paramdoctor.tracking import start_run

    if not world.is_distributed:
        with start_run(**kwargs) as run:
            yield run
        return
    with ExitStack() as stack:
        opened: list[Any] = []

        def open_on_main() -> tuple[str, str, str, str, str]:
            run = stack.enter_context(start_run(**kwargs))
            opened.append(run)
            return (run.run_id, run.run_name, run.experiment_id, run.experiment, run.tracking_uri)

        ids = world.from_main(open_on_main)
        yield opened[0] if opened else _FollowerRun(*ids)


def _data_parallel(model: nn.Module, world: distributed.World, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel in a job of several processes; ``model`` itself otherwise.

    Built again whenever the set of trainable parameters changes (a backbone
    unfrozen): DDP fixes the parameters it averages when it is made.
    """
    if not world.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cpu":
        # CPU convolutions hand back weight gradients with other strides on size-1 dims (one input
        # channel): the same layout, flagged as a mismatch; on CUDA the warning stays, it can matter there
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)
    # gradients as views of the buckets DDP averages: no copy, and no layout mismatch for size-1 dims
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
    )


def _decided_on_main(
    world: distributed.World, improved: bool, should_stop: bool, stop_request: StopTraining | None
) -> tuple[bool, bool, StopTraining | None]:
    """Rank 0's early-stopping verdict and stop request, on every rank."""
    request = None if stop_request is None else (stop_request.reason, stop_request.message, stop_request.tags)
    improved, should_stop, request = world.broadcast((bool(improved), bool(should_stop), request))
    return improved, should_stop, None if request is None else StopTraining(request[0], request[1], request[2])


def _rng_of_rank(state: dict[str, Any], world: distributed.World) -> dict[str, Any]:
    """The RNG streams this rank saved in a checkpoint (rank 0's in a plain process or a job of another size)."""
    ranks = state.get("rng_ranks")
    if world.is_distributed and ranks and len(ranks) == world.size:
        return ranks[world.rank]
    return state["rng"]
