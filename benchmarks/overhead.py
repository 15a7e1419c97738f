"""What paramdoctor's telemetry and MLflow logging cost a training run.

Three ways to train the same model on the same data for the same steps:

* ``plain``       the loop people write today: AdamW with two parameter groups
                  (backbone / head learning rates), cosine schedule per step,
                  per-epoch validation, best-weights keeping, early stopping
                  (disabled so step counts match). No telemetry, no MLflow.
* ``paramdoctor`` ``paramdoctor.training.fit`` with full telemetry and batched
                  MLflow logging at the defaults (log_every_n_steps=1,
                  telemetry_every_n_steps=10).
* ``naive``       the plain loop plus what people add to get curves into
                  MLflow: one synchronous ``mlflow.log_metrics`` per step
                  (loss, LR per group, grad norm), fluent API, same store.

All three build their loaders with ``paramdoctor.data.build_loaders`` and the
same config and seed, so the input pipeline is identical and not what is
measured. Runs alternate (the order rotates each repeat) after one untimed
warm-up of each, which also creates the SQLite store's tables.

Two timings per run: ``total`` (the whole call: set-up, MLflow run open and
close, checkpoint) and ``loop`` (the sum of per-epoch train+validate times,
the part that grows with training length). The per-step cost of telemetry is
``(paramdoctor - plain) / optimizer steps``.

    .venv/bin/python benchmarks/overhead.py --epochs 3 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine_line, median, reproduce_line, set_threads  # noqa: E402

VARIANTS = ("plain", "paramdoctor", "naive")


@dataclass
class Timing:
    total_s: float
    loop_s: float
    steps: int
    final_val_acc: float


# --- the shared set-up ------------------------------------------------------------


def _config(args: argparse.Namespace):
    from paramdoctor.config import load_config

    return load_config(
        None,
        [
            f"data.dataset={args.dataset}",
            f"data.batch_size={args.batch_size}",
            f"model.name={args.model}",
            f"trainer.max_epochs={args.epochs}",
            f"trainer.device={args.device}",
            f"seed={args.seed}",
            "early_stopping.enabled=false",  # same number of steps in every variant
            "experiment.name=bench-overhead",
        ],
    )


def _setup(config):
    """Seed, loaders, model and the classic optimizer/schedule, exactly as a hand-written script does."""
    import torch

    from paramdoctor.config import effective_backbone_lr
    from paramdoctor.data import build_loaders
    from paramdoctor.models import build_model
    from paramdoctor.training.fit import resolve_device, seed_everything

    seed_everything(config.seed)
    device = resolve_device(config.trainer.device)
    loaders = build_loaders(config.data, seed=config.seed, device=device, model_name=config.model.name)
    bundle = build_model(
        config.model, num_classes=loaders.num_classes, in_channels=loaders.in_channels, image_size=loaders.image_size
    )
    model = bundle.model.to(device)
    opt = config.optimizer
    optimizer = torch.optim.AdamW(
        [
            {"params": bundle.param_groups["backbone"], "lr": effective_backbone_lr(config), "name": "backbone"},
            {"params": bundle.param_groups["head"], "lr": opt.lr, "name": "head"},
        ],
        lr=opt.lr,
        betas=opt.betas,
        weight_decay=opt.weight_decay,
    )
    total_steps = len(loaders.train) * config.trainer.max_epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return device, loaders, model, optimizer, scheduler


def _evaluate(model, loader) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += y.numel()
    return loss_sum / seen, correct / seen


# --- the plain loop (and the naive MLflow variant of it) --------------------------


def plain_loop(config, *, log_step: Callable | None = None, log_epoch: Callable | None = None) -> Timing:
    """The classic fine-tuning loop; ``log_step``/``log_epoch`` are where the naive variant logs."""
    import torch
    import torch.nn.functional as F

    t_start = time.perf_counter()
    device, loaders, model, optimizer, scheduler = _setup(config)
    patience, best, best_state, wait = config.early_stopping.patience, -math.inf, None, 0
    loop_s, step, val_acc = 0.0, 0, float("nan")
    for epoch in range(1, config.trainer.max_epochs + 1):
        t_epoch = time.perf_counter()
        loaders.train.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        for x, y in loaders.train:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            grad_norm = None
            if log_step is not None:  # the naive variant wants the grad norm on its curves
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
            optimizer.step()
            step += 1
            if log_step is not None:
                log_step(step, loss, grad_norm, optimizer)
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            with torch.no_grad():
                loss_sum += loss.detach().double() * y.numel()
                correct += (logits.argmax(1) == y).sum()
            seen += y.numel()
        train_loss, train_acc = float(loss_sum) / seen, float(correct) / seen
        val_loss, val_acc = _evaluate(model, loaders.val)
        if log_epoch is not None:
            epoch_metrics = {"train/loss": train_loss, "train/acc": train_acc, "val/loss": val_loss, "val/acc": val_acc}
            log_epoch(epoch, epoch_metrics)
        # early stopping on val/acc, keeping the best weights (disabled here: same step count as the others)
        if val_acc > best:
            best, wait = val_acc, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            wait += 1
        loop_s += time.perf_counter() - t_epoch
        if config.early_stopping.enabled and wait >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return Timing(time.perf_counter() - t_start, loop_s, step, val_acc)


def naive_mlflow_loop(config) -> Timing:
    """The plain loop with one synchronous fluent ``mlflow.log_metrics`` call per step."""
    import mlflow

    from paramdoctor.config import flatten, to_tree

    t_start = time.perf_counter()
    mlflow.set_experiment(config.experiment.name)
    with mlflow.start_run():
        mlflow.log_params({k: ("null" if v is None else v) for k, v in flatten(to_tree(config)).items()})

        def log_step(step, loss, grad_norm, optimizer) -> None:
            metrics = {"step/loss": loss.item(), "step/grad_norm": grad_norm.item()}
            for group in optimizer.param_groups:
                metrics[f"step/lr/{group['name']}"] = group["lr"]
            mlflow.log_metrics(metrics, step=step)

        def log_epoch(epoch, metrics) -> None:
            mlflow.log_metrics(metrics, step=epoch)

        timing = plain_loop(config, log_step=log_step, log_epoch=log_epoch)
    timing.total_s = time.perf_counter() - t_start
    return timing


def paramdoctor_fit(config) -> Timing:
    from paramdoctor.training import fit

    t_start = time.perf_counter()
    result = fit(config)
    total = time.perf_counter() - t_start
    if result.status != "FINISHED":
        raise SystemExit(f"paramdoctor fit ended {result.status}: {result.failure}")
    loop_s = sum(h["epoch/time_s"] for h in result.history)
    steps = result.epochs_run * _steps_per_epoch(result.run_id)
    return Timing(total, loop_s, steps, result.history[-1]["val/acc"])


def _steps_per_epoch(run_id: str) -> int:
    """What fit recorded in its run's tags (read after the timing)."""
    from mlflow.tracking import MlflowClient

    return int(MlflowClient().get_run(run_id).data.tags["paramdoctor.steps_per_epoch"])


RUNNERS: dict[str, Callable] = {"plain": plain_loop, "paramdoctor": paramdoctor_fit, "naive": naive_mlflow_loop}


# --- the benchmark ------------------------------------------------------------------


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each variant, alternated (default 5)")
    parser.add_argument("--dataset", default="digits", help="data.dataset (default digits: offline)")
    parser.add_argument("--model", default="small_cnn", help="model.name (default small_cnn)")
    parser.add_argument("--batch-size", type=int, default=64, help="data.batch_size (default 64)")
    parser.add_argument("--device", default="auto", help="trainer.device: auto, cpu, cuda (default auto)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1: steady on a shared CPU); 0 keeps torch's default",
    )
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive per-step MLflow variant")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be >= 1")
    return args


def _explicit_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        f"--epochs={args.epochs}", f"--repeats={args.repeats}", f"--dataset={args.dataset}", f"--model={args.model}",
        f"--batch-size={args.batch_size}", f"--device={args.device}", f"--seed={args.seed}",
        f"--threads={args.threads}",
    ]
    return argv + (["--skip-naive"] if args.skip_naive else [])


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    set_threads(args.threads)
    variants = [v for v in VARIANTS if not (args.skip_naive and v == "naive")]

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="paramdoctor-bench-") as tmp:
        # a SQLite store puts artifacts in ./mlruns: work inside the temporary directory
        os.chdir(tmp)
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri  # fit reads it; the fluent API too
        import mlflow

        mlflow.set_tracking_uri(uri)
        warnings.filterwarnings("ignore")
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        config = _config(args)
        from paramdoctor.training.fit import resolve_device

        print(machine_line(str(resolve_device(config.trainer.device))))
        print(
            f"config: {config.data.dataset}, {config.model.name}, batch {config.data.batch_size}, "
            f"{config.trainer.max_epochs} epochs, log_every_n_steps={config.trainer.log_every_n_steps}, "
            f"telemetry_every_n_steps={config.trainer.telemetry_every_n_steps}, mlflow store {uri}"
        )
        for name in variants:  # untimed: imports, oneDNN kernels, MLflow tables
            RUNNERS[name](config)

        results: dict[str, list[Timing]] = {name: [] for name in variants}
        for r in range(args.repeats):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for name in order:
                results[name].append(RUNNERS[name](config))
            line = " | ".join(
                f"{name} {results[name][-1].total_s:6.2f} s (loop {results[name][-1].loop_s:6.2f} s)"
                for name in variants
            )
            print(f"run {r + 1}: {line}")
        os.chdir(cwd)

    steps = results["plain"][0].steps
    for name in variants:
        if any(t.steps != steps for t in results[name]):
            print(f"warning: {name} ran {[t.steps for t in results[name]]} steps, plain {steps}")
    med = {
        name: (median([t.total_s for t in results[name]]), median([t.loop_s for t in results[name]]))
        for name in variants
    }
    print(f"optimizer steps per run: {steps}; median of {args.repeats}:")
    for name in variants:
        total, loop = med[name]
        print(f"  {name:<12} total {total:7.3f} s   loop {loop:7.3f} s   loop per step {1000 * loop / steps:7.2f} ms")
    base_total, base_loop = med["plain"]
    for name in variants[1:]:
        total, loop = med[name]
        print(
            f"{name} / plain: total x{total / base_total:.3f}, loop x{loop / base_loop:.3f}; "
            f"cost per step: {1000 * (total - base_total) / steps:+.2f} ms (total), "
            f"{1000 * (loop - base_loop) / steps:+.2f} ms (loop)"
        )
    print(reproduce_line("overhead.py", _explicit_argv(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
