"""Training hooks: the few calls a training loop makes so the doctor can see it.

The built-in trainer uses exactly this API; a hand-written loop needs five lines::

    from paramdoctor.hooks import TrainingMonitor
    from paramdoctor.tracking import start_run

    with start_run(experiment="my-finetune", params={"optimizer.lr": 1e-3}) as run:
        monitor = TrainingMonitor(optimizer, run.sink, model=model)     # + 1
        monitor.before_fit()                                             # + 2
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in train_loader:
                loss = criterion(model(x), y)
                loss.backward()
                monitor.after_backward()        # + 3  grad norm, before clipping
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                monitor.after_step(loss)        # + 4  loss, LR per group, telemetry
                optimizer.zero_grad()
                scheduler.step()
            val_loss, val_acc = evaluate(model, val_loader)
            monitor.after_epoch(epoch, {"val/loss": val_loss, "val/acc": val_acc})  # + 5
        monitor.after_fit()

Where the calls go, and why:

* ``after_backward`` once per optimizer step, after every accumulation
  micro-batch has been backpropagated (and after ``scaler.unscale_`` under AMP),
  before clipping: the recorded gradient norm is the one clipping would see.
* ``after_step`` after ``optimizer.step`` and before ``scheduler.step``: the
  learning rate read from the optimizer is the one this step used. Pass the
  loss of the step (the mean over its micro-batches), as a float or a 0-dim
  tensor; tensors are converted only on logging steps, with one host sync.

Recorded (keys from :mod:`paramdoctor.keys`, step = optimizer step, 1-based):
``step/loss``, ``step/grad_norm`` and ``step/lr/<group>`` on logging steps;
``telemetry/<group>/{grad_norm,update_ratio,drift}`` per layer group on
telemetry steps (``drift`` is also recorded as 0 at step 0 by ``before_fit``).
Logging and telemetry steps are step 1 and every multiple of the interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import nn

from paramdoctor import keys
from paramdoctor.errors import ConfigError, TrainingError

__all__ = [
    "FanoutSink",
    "MemorySink",
    "MetricSink",
    "NonFiniteLossError",
    "TrainingMonitor",
]

NONFINITE_ADVICE = "lower optimizer.lr, set trainer.gradient_clip_val, add scheduler.warmup_epochs"

LayerGroups = Mapping[str, "Iterable[nn.Parameter] | Iterable[tuple[str, nn.Parameter]] | nn.Module"]


class NonFiniteLossError(TrainingError):
    """The loss or the gradient norm became NaN or infinite: training cannot go on.

    Raised after the value was recorded, so the run keeps the evidence.
    """

    def __init__(self, message: str, *, step: int | None = None, value: float | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.value = value


# --- sinks -------------------------------------------------------------------------


class MetricSink(Protocol):
    """Where the monitor sends numbers: ``MlflowSink``, ``MemorySink`` or your own."""

    def log(self, key: str, value: float, step: int) -> None: ...

    def flush(self) -> None: ...


class MemorySink:
    """Keeps every metric in memory as ``{key: [(step, value), ...]}``.

    For tests and for in-process consumers (a pruner judging a run while it
    trains) that should not have to read the numbers back from MLflow.
    """

    def __init__(self) -> None:
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.flushes = 0

    def log(self, key: str, value: float, step: int) -> None:
        self.metrics.setdefault(key, []).append((int(step), float(value)))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.flush()

    def steps(self, key: str) -> list[int]:
        return [s for s, _ in self.metrics.get(key, [])]

    def values(self, key: str) -> list[float]:
        return [v for _, v in self.metrics.get(key, [])]

    def last(self, key: str) -> float | None:
        series = self.metrics.get(key)
        return series[-1][1] if series else None


class FanoutSink:
    """Sends every metric to several sinks (e.g. MLflow and an in-memory pruner)."""

    def __init__(self, *sinks: MetricSink) -> None:
        self.sinks = sinks

    def log(self, key: str, value: float, step: int) -> None:
        for sink in self.sinks:
            sink.log(key, value, step)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()


# --- norms -------------------------------------------------------------------------


def _per_tensor_norms(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """L2 norm of each tensor, as one float32 vector on ``device``, in input order.

    Fused ``_foreach_norm`` per (device, dtype) bucket where supported, like
    ``torch.nn.utils.get_total_norm``; no host sync.
    """
    if not tensors:
        return torch.zeros(0, device=device)
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for (dev, _), idx in buckets.items():
        group = [tensors[i] for i in idx]
        if dev.type in ("cuda", "cpu"):
            norms = torch._foreach_norm(group, 2)
        else:
            norms = [torch.linalg.vector_norm(t) for t in group]
        for i, n in zip(idx, norms):
            out[i] = n
    return torch.stack([n.to(device=device, dtype=torch.float32) for n in out])  # type: ignore[union-attr]


def _due(step: int, every: int) -> bool:
    return every == 1 or step == 1 or step % every == 0


def _is_finite(value: float) -> bool:
    return math.isfinite(value)


# --- layer groups ------------------------------------------------------------------


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    seen: set[int] = set()
    params = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _group_params(name: str, members: Any) -> list[nn.Parameter]:
    if isinstance(members, nn.Module):
        return list(members.parameters())
    params = []
    for item in members:
        if isinstance(item, tuple) and len(item) == 2:
            item = item[1]
        if not isinstance(item, torch.Tensor):
            raise ConfigError(
                f"layer_groups[{name!r}] holds a {type(item).__name__}; give parameters or (name, parameter) pairs"
            )
        params.append(item)
    return params


def _unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / DataParallel / torch.compile wrappers (their children are the layers)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _resolve_layer_groups(
    layer_groups: LayerGroups | None,
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    optimizer_group_names: list[str],
) -> dict[str, list[nn.Parameter]]:
    """Named, disjoint lists of parameters to take telemetry on."""
    raw: dict[str, list[nn.Parameter]] = {}
    if layer_groups is not None:
        for name, members in layer_groups.items():
            raw[keys.safe_key(str(name))] = _group_params(str(name), members)
    elif model is not None:
        # default: one group per top-level child, only parameters the optimizer trains
        model = _unwrap(model)
        trained = {id(p) for p in _optimizer_params(optimizer)}
        for child_name, child in model.named_children():
            params = [p for p in child.parameters() if id(p) in trained]
            if params:
                raw[keys.safe_key(child_name)] = params
        own = [p for p in model.parameters(recurse=False) if id(p) in trained]
        if own:
            raw["root" if raw else "model"] = own
    else:
        for name, group in zip(optimizer_group_names, optimizer.param_groups):
            raw.setdefault(name, []).extend(group["params"])

    groups: dict[str, list[nn.Parameter]] = {}
    owner: dict[int, str] = {}
    for name, params in raw.items():
        unique = []
        for p in params:
            if id(p) in owner:
                if owner[id(p)] == name:
                    continue
                raise ConfigError(
                    f"layer_groups: a parameter is in both {owner[id(p)]!r} and {name!r}; give each parameter one group"
                )
            owner[id(p)] = name
            unique.append(p)
        if unique:
            groups[name] = unique
    return groups


# --- the monitor ---------------------------------------------------------------------


class TrainingMonitor:
    """Records loss, learning rates, gradient norms and per-layer-group telemetry.

    ``step`` counts optimizer steps done (``after_step`` calls). Telemetry per
    layer group, every ``telemetry_every_n_steps`` steps:

    * ``grad_norm``: L2 norm of the group's gradients (groups without gradients,
      e.g. a frozen backbone, are skipped);
    * ``update_ratio``: ||w_after - w_before|| / ||w_before|| over this step;
    * ``drift``: ||w - w_initial|| / ||w_initial|| since ``before_fit``.

    All norms are computed on the parameters' device with fused kernels; a
    telemetry step costs one weight snapshot and one host sync, other steps one
    fused gradient norm and, on logging steps, one host sync.

    Pass ``grad_scaler`` when training with a float16 ``GradScaler``: a step whose
    gradients overflowed is skipped by the scaler, so its infinite gradient norm
    is neither an error nor recorded as evidence.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        sink: MetricSink,
        *,
        model: nn.Module | None = None,
        layer_groups: LayerGroups | None = None,
        group_names: Sequence[str] | None = None,
        log_every_n_steps: int = 1,
        telemetry_every_n_steps: int = 10,
        on_nonfinite: Literal["raise", "record"] = "raise",
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if log_every_n_steps < 1:
            raise ConfigError(f"log_every_n_steps must be >= 1, got {log_every_n_steps} (use 1 to log every step)")
        if telemetry_every_n_steps < 1:
            raise ConfigError(f"telemetry_every_n_steps must be >= 1, got {telemetry_every_n_steps}")
        if on_nonfinite not in ("raise", "record"):
            raise ConfigError(f"on_nonfinite must be 'raise' or 'record', got {on_nonfinite!r}")
        n_groups = len(optimizer.param_groups)
        if group_names is not None and len(group_names) != n_groups:
            raise ConfigError(
                f"group_names has {len(group_names)} names but the optimizer has {n_groups} param groups; give one per group"
            )
        self.optimizer = optimizer
        self.sink = sink
        self.log_every_n_steps = log_every_n_steps
        self.telemetry_every_n_steps = telemetry_every_n_steps
        self.on_nonfinite = on_nonfinite
        self.grad_scaler = grad_scaler
        self.step = 0

        names = list(group_names) if group_names is not None else [
            g.get("name", f"group{i}") for i, g in enumerate(optimizer.param_groups)
        ]
        self.group_names = [keys.safe_key(str(n)) for n in names]
        # groups sharing a name (decay / no-decay halves) log one LR: the first group's
        self._lr_groups: list[tuple[str, int]] = []
        for i, name in enumerate(self.group_names):
            if name not in {n for n, _ in self._lr_groups}:
                self._lr_groups.append((name, i))
        self._lr_keys = [(keys.step_lr(name), i) for name, i in self._lr_groups]

        self._params = _optimizer_params(optimizer)
        self.layer_groups = _resolve_layer_groups(layer_groups, model, optimizer, self.group_names)
        self._tracked: list[nn.Parameter] = [p for ps in self.layer_groups.values() for p in ps]
        self._group_slices: list[tuple[str, slice]] = []
        start = 0
        for name, ps in self.layer_groups.items():
            self._group_slices.append((name, slice(start, start + len(ps))))
            start += len(ps)
        self._device = self._tracked[0].device if self._tracked else (
            self._params[0].device if self._params else torch.device("cpu")
        )
        # which group each tracked tensor belongs to: per-group sums in one index_add_
        self._group_index = torch.tensor(
            [g for g, (_, sl) in enumerate(self._group_slices) for _ in range(sl.start, sl.stop)],
            dtype=torch.long,
            device=self._device,
        )

        self._initial: list[torch.Tensor] | None = None  # weights at before_fit (drift reference)
        self._scratch: list[torch.Tensor] | None = None  # reused each telemetry step: no allocations
        self._initial_group_norms: list[float] = []
        self._grad_norm: torch.Tensor | None = None
        self._backward_seen = False
        # telemetry-step state between after_backward and after_step
        self._tele_grad_sq: torch.Tensor | None = None  # squared grad norm per tracked tensor
        self._tele_has_grad: list[bool] = []
        self._tele_before_sq: torch.Tensor | None = None  # squared weight norm per tensor before the step
        self._pending_bad: torch.Tensor | None = None  # non-finite seen on a step that was not synced
        self._pending_since: int | None = None

    # -- properties ------------------------------------------------------------------

    @property
    def last_grad_norm(self) -> float | None:
        """Global gradient norm of the latest ``after_backward`` (converted on access)."""
        return None if self._grad_norm is None else float(self._grad_norm)

    def _is_telemetry_step(self, step: int) -> bool:
        return bool(self._tracked) and _due(step, self.telemetry_every_n_steps)

    # -- events ----------------------------------------------------------------------

    @torch.no_grad()
    def before_fit(self) -> None:
        """Snapshot the initial weights (the reference for ``drift``); record drift 0 at step 0."""
        self._initial = [p.detach().clone() for p in self._tracked]
        sq = _per_tensor_norms(self._initial, self._device).square()
        self._initial_group_norms = self._group_sums(sq[None]).sqrt()[0].tolist()
        for name, _ in self._group_slices:
            self.sink.log(keys.telemetry(name, keys.TELEMETRY_DRIFT), 0.0, self.step)

    @torch.no_grad()
    def after_backward(self) -> torch.Tensor:
        """Global L2 norm of the gradients (a tensor; no host sync), before clipping.

        Call once per optimizer step, after the last accumulation micro-batch. On
        telemetry steps it also takes per-group gradient norms and a snapshot of
        the weights to measure this step's update.
        """
        if self._initial is None:
            self.before_fit()
        grads = [p.grad for p in self._params if p.grad is not None]
        self._grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self._device)
        self._backward_seen = True
        self._reset_step_state()
        if self._is_telemetry_step(self.step + 1):
            has_grad = [p.grad is not None and p.requires_grad for p in self._tracked]
            tracked_grads = [p.grad if ok else torch.zeros((), device=p.device) for p, ok in zip(self._tracked, has_grad)]
            self._tele_grad_sq = _per_tensor_norms(tracked_grads, self._device).square()
            self._tele_has_grad = has_grad
            scratch = self._scratch_buffers()
            torch._foreach_copy_(scratch, [p.detach() for p in self._tracked])
            self._tele_before_sq = _per_tensor_norms(scratch, self._device).square()
        return self._grad_norm

    @torch.no_grad()
    def after_step(self, loss: float | torch.Tensor) -> None:
        """Record the step that ``optimizer.step`` just took; raise if it went non-finite."""
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ConfigError(
                    f"after_step(loss) got a tensor of shape {tuple(loss.shape)}; pass the step's mean loss (a float or 0-dim tensor)"
                )
            loss = loss.detach()
        if not self._backward_seen:
            self.after_backward()  # the caller skipped after_backward: grads are still there
            self._tele_before_sq = None  # the weights already moved: no update ratio this step
        self._backward_seen = False
        self.step += 1
        step = self.step
        log_now = _due(step, self.log_every_n_steps)
        telemetry_now = self._is_telemetry_step(step) and self._tele_grad_sq is not None
        grad_norm = self._grad_norm
        assert grad_norm is not None

        if not (log_now or telemetry_now):
            self._remember_nonfinite(loss, grad_norm, step)
            self._reset_step_state()
            return

        # one host sync for everything this step needs
        scalars: list[torch.Tensor] = [grad_norm.reshape(()).to(self._device, torch.float32)]
        loss_is_tensor = isinstance(loss, torch.Tensor)
        if loss_is_tensor:
            scalars.append(loss.reshape(()).to(self._device, torch.float32))
        if self._pending_bad is not None:
            scalars.append(self._pending_bad.to(self._device, torch.float32))
        n_head = len(scalars)
        if telemetry_now:
            scalars.append(self._telemetry_vector())
            values = torch.cat([s.reshape(-1) for s in scalars]).tolist()
        else:
            values = torch.stack(scalars).tolist()
        norm_value = values[0]
        loss_value = values[1] if loss_is_tensor else float(loss)
        pending_bad = bool(values[n_head - 1]) if self._pending_bad is not None else False
        pending_since = self._pending_since
        self._pending_bad = None
        self._pending_since = None

        overflow = self.grad_scaler is not None and not _is_finite(norm_value)
        if log_now:
            self.sink.log(keys.STEP_LOSS, loss_value, step)
            if not overflow:
                self.sink.log(keys.STEP_GRAD_NORM, norm_value, step)
            for key, i in self._lr_keys:
                self.sink.log(key, float(self.optimizer.param_groups[i]["lr"]), step)
        if telemetry_now:
            self._log_telemetry(values[n_head:], step, skip_update=overflow)
        self._reset_step_state()

        bad_now = not _is_finite(loss_value) or (not _is_finite(norm_value) and self.grad_scaler is None)
        if (bad_now or pending_bad) and self.on_nonfinite == "raise":
            if bad_now:
                where, value = f"at optimizer step {step}", loss_value if not _is_finite(loss_value) else norm_value
                what = f"loss={loss_value}, grad_norm={norm_value}"
            else:
                where, value = f"between optimizer steps {pending_since} and {step}", float("nan")
                what = f"loss={loss_value}, grad_norm={norm_value} now"
            raise NonFiniteLossError(
                f"non-finite loss or gradient norm {where} ({what}); {NONFINITE_ADVICE}", step=step, value=value
            )

    def after_epoch(self, epoch: int, metrics: Mapping[str, float | torch.Tensor | None]) -> None:
        """Record epoch-level metrics (``train/loss``, ``val/acc``, ...) at step = ``epoch``; None values are skipped."""
        for key, value in metrics.items():
            if value is not None:
                self.sink.log(key, float(value), int(epoch))

    def after_fit(self) -> None:
        """Send everything still buffered."""
        self.sink.flush()

    # -- resuming ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the same series: the step counter and the drift reference."""
        return {
            "step": self.step,
            "initial": None if self._initial is None else [t.detach().to("cpu", copy=True) for t in self._initial],
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``: later steps are numbered on, drift is measured from the first weights."""
        self.step = int(state["step"])
        initial = state.get("initial")
        if initial is None:
            return
        if len(initial) != len(self._tracked) or any(a.shape != b.shape for a, b in zip(initial, self._tracked)):
            raise ConfigError("TrainingMonitor.load_state_dict: the saved reference weights do not match this model")
        self._initial = [t.to(p.device, p.dtype) for t, p in zip(initial, self._tracked)]
        sq = _per_tensor_norms(self._initial, self._device).square()
        self._initial_group_norms = self._group_sums(sq[None]).sqrt()[0].tolist()

    # -- internals -------------------------------------------------------------------

    def _reset_step_state(self) -> None:
        self._tele_grad_sq = None
        self._tele_before_sq = None

    def _scratch_buffers(self) -> list[torch.Tensor]:
        if self._scratch is None:
            self._scratch = [torch.empty_like(p, memory_format=torch.preserve_format) for p in self._tracked]
        return self._scratch

    def _group_sums(self, per_tensor: torch.Tensor) -> torch.Tensor:
        """``(rows, tensors)`` -> ``(rows, groups)``: sums over each layer group's tensors."""
        out = torch.zeros(per_tensor.shape[0], len(self._group_slices), device=self._device, dtype=per_tensor.dtype)
        return out.index_add_(1, self._group_index, per_tensor)

    def _remember_nonfinite(self, loss: float | torch.Tensor, grad_norm: torch.Tensor, step: int) -> None:
        """Fold this step's finiteness into a device flag: checked on the next synced step."""
        bad: torch.Tensor | None = None
        if self.grad_scaler is None:
            bad = ~torch.isfinite(grad_norm)
        if isinstance(loss, torch.Tensor):
            loss_bad = ~torch.isfinite(loss).to(self._device)
            bad = loss_bad if bad is None else (bad.to(self._device) | loss_bad)
        elif not _is_finite(float(loss)):
            bad = torch.ones((), dtype=torch.bool, device=self._device)
        if bad is None:
            return
        bad = bad.reshape(()).to(self._device)
        self._pending_bad = bad if self._pending_bad is None else (self._pending_bad | bad)
        if self._pending_since is None:
            self._pending_since = step

    def _telemetry_vector(self) -> torch.Tensor:
        """Per group: grad norm, update norm, weight-before norm, drift norm (groups x 4, flattened).

        In-place into the scratch buffers (``before - after``, then ``w - w_initial``):
        a telemetry step allocates nothing the size of the model.
        """
        assert self._tele_grad_sq is not None and self._initial is not None
        weights = [p.detach() for p in self._tracked]
        scratch = self._scratch_buffers()
        if self._tele_before_sq is not None:
            torch._foreach_sub_(scratch, weights)  # scratch held the weights before the step
            sq_update = _per_tensor_norms(scratch, self._device).square()
            sq_before = self._tele_before_sq
        else:
            sq_update = sq_before = torch.full_like(self._tele_grad_sq, float("nan"))
        torch._foreach_copy_(scratch, weights)
        torch._foreach_sub_(scratch, self._initial)
        sq_drift = _per_tensor_norms(scratch, self._device).square()
        sums = self._group_sums(torch.stack([self._tele_grad_sq, sq_update, sq_before, sq_drift]))
        return sums.sqrt().t().reshape(-1)

    def _log_telemetry(self, values: list[float], step: int, *, skip_update: bool) -> None:
        has_grad = self._tele_has_grad
        for g, ((name, sl), initial_norm) in enumerate(zip(self._group_slices, self._initial_group_norms)):
            grad, update, before, drift = values[4 * g : 4 * g + 4]
            trained = any(has_grad[sl])
            if trained and not skip_update:
                self.sink.log(keys.telemetry(name, keys.TELEMETRY_GRAD_NORM), grad, step)
                if before > 0 and not math.isnan(update):
                    self.sink.log(keys.telemetry(name, keys.TELEMETRY_UPDATE_RATIO), update / before, step)
            if initial_norm > 0:
                self.sink.log(keys.telemetry(name, keys.TELEMETRY_DRIFT), drift / initial_norm, step)
