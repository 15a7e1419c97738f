"""``paramdoctor lr-find [CONFIG.yaml] [key=value ...] [--apply]``: the learning-rate range test.

Builds the model, data and optimizer exactly as ``paramdoctor train`` would
from CONFIG (defaults when omitted) plus the overrides, sweeps the head LR
exponentially from ``--start`` to ``--end`` over ``--steps`` optimizer steps
(the backbone keeps its configured ratio), stops on divergence, and suggests an
LR with every picker (``robust``, ``valley``, ``steepest``, ``minimum``; see
:mod:`paramdoctor.experiments.lr_pickers`); ``--picker`` chooses the one that
counts (default ``robust``, the one that measured best). The sweep is one
MLflow run tagged ``paramdoctor.kind=lr_find``, with the curve, the
suggestions, ``paramdoctor/lr_find.png`` and ``paramdoctor/lr_find.json``
(:mod:`paramdoctor.experiments.lr_find`); the picture is also written to
``--out`` (default ``lr_find.png``).

``--apply`` writes the suggestion into CONFIG: ``optimizer.lr`` becomes the
suggested head LR; an explicit ``optimizer.backbone_lr`` becomes the new head
LR times the config's current backbone/head ratio, and a null (auto) one is
left null, since auto already keeps the ratio. Nothing else in the file
changes (comments and order included); the file is replaced atomically.
Overrides given on the command line shape the sweep but are not written.

``--json`` prints one object (``schema_version`` 1)::

    {"schema_version": 1, "run_id": str, "run_name": str, "experiment": str,
     "config": "path/to/config.yaml" | "defaults",
     "sweep": {"start": float, "end": float, "steps": int, "beta": float, "diverge_factor": float,
               "steps_run": int, "stop_reason": "completed"|"diverged"|"nonfinite_loss",
               "nonfinite_at": int|null, "last_lr": float|null,
               "ratios": {"backbone": float, "head": 1.0}, "device": str,
               "train_samples": int, "steps_per_epoch": int, "duration_s": float},
     "suggestions": {"robust": {"lr": float|null, "backbone_lr": float|null, "step": int|null,
                                "reason": str|null}, "valley": {...}, "steepest": {...}, "minimum": {...}},
     "picker": "robust", "status": "suggested"|"no_suggestion",
     "suggested_lr": float|null,            # the chosen picker's LR, 2 significant digits
     "suggested_backbone_lr": float|null,   # suggested_lr x the backbone ratio
     "current": {"lr": float, "backbone_lr": float, "backbone_auto": bool},
     "picture": "lr_find.png" | null,
     "applied": null | {"file": str, "changes": [{"key": str, "old": str, "new": str, "written": bool}]}}

Exit codes: 0 a suggestion (and, with ``--apply``, written), 1 no suggestion
could be made (the loss never clearly descended; the run is still recorded,
tag ``paramdoctor.lr_find.status=no_suggestion``; nothing applied), 2 bad input
(one line; no run is made), 130 interrupted (the run is marked KILLED).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Optional

import typer

from paramdoctor.errors import ConfigError, InputError


def register(app: typer.Typer) -> None:
    app.command(
        "lr-find",
        help=(
            "Learning-rate range test: sweep the LR exponentially on a fresh copy of the model CONFIG (plus key=value "
            "overrides) builds, suggest an LR with each picker, log the curve and lr_find.png to MLflow. --apply writes "
            "the suggestion into CONFIG. Exit 0 suggested, 1 no suggestion, 2 bad input, 130 interrupted."
        ),
    )(lr_find)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def lr_find(
    args: Optional[list[str]] = typer.Argument(
        None, metavar="[CONFIG.yaml] [KEY=VALUE]...", help="A config file and/or dotted overrides, as for `train`."
    ),
    apply: bool = typer.Option(False, "--apply", help="Write the suggested LRs into CONFIG (atomically; the rest of the file kept)."),
    start: float = typer.Option(1e-7, "--start", metavar="LR", help="Head LR of the first step."),
    end: float = typer.Option(10.0, "--end", metavar="LR", help="Head LR of the last step (at most 100)."),
    steps: int = typer.Option(200, "--steps", metavar="N", help="Optimizer steps in the sweep (20 to 10,000); the data is cycled."),
    picker: str = typer.Option("robust", "--picker", metavar="NAME", help="Which suggestion counts: robust, valley, steepest or minimum."),
    out: Path = typer.Option(Path("lr_find.png"), "--out", metavar="FILE.png", help="Where to write the picture."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> int:
    from paramdoctor.config import load_config
    from paramdoctor.experiments.lr_find import SweepSpec, check_apply_target, check_picker

    # -- every check on the input, before anything is built or recorded
    args = list(args or [])
    config_path = args.pop(0) if args and "=" not in args[0] else None
    stray = [a for a in args if "=" not in a]
    if stray:
        raise ConfigError(f"argument {stray[0]!r}: expected key=value (only the first argument may be a config file)")
    if apply and config_path is None:
        raise InputError("--apply needs a CONFIG file to write the suggestion into, e.g. `paramdoctor lr-find my.yaml --apply`")
    spec = SweepSpec(start=start, end=end, steps=steps)
    check_picker(picker)
    _check_out(out)
    config = load_config(config_path, args)
    if apply:
        check_apply_target(config_path)

    from rich.console import Console

    console = Console(stderr=as_json)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = _sweep(console, config, spec, picker, config_path, out, progress=not (quiet or as_json))
    except KeyboardInterrupt:
        typer.echo("interrupted: the lr-find run is marked KILLED in MLflow; nothing was applied", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

    if apply and result.suggested_lr is not None:
        from paramdoctor.experiments.lr_find import apply_to_yaml

        backbone = None if result.backbone_auto else result.suggested_backbone_lr
        changes = apply_to_yaml(config_path, result.suggested_lr, backbone, config=config)
        result.applied = {"file": str(config_path), "changes": [c.__dict__ for c in changes]}

    if as_json:
        from paramdoctor.report import jsonable

        typer.echo(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False))
    else:
        render(result, Console(), config_path=config_path, overrides=args, apply=apply)
    return 0 if result.suggested_lr is not None else 1


def _check_out(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name such as lr_find.png")
    if not folder.is_dir():
        raise InputError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {folder} is not writable")


def _sweep(console, config, spec, picker: str, config_path: str | None, out: Path, *, progress: bool):
    from paramdoctor.experiments.lr_find import lr_find as run_lr_find

    label = config_path or "defaults"
    if not progress or not console.is_terminal:
        return run_lr_find(config, spec, picker=picker, config_label=label, picture=out)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("lr-find"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("sweep", total=spec.steps, loss="-")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, loss=f"{loss:.4g}")

        return run_lr_find(config, spec, picker=picker, config_label=label, picture=out, on_step=on_step)


def render(result: Any, console: Any, *, config_path: str | None, overrides: list[str], apply: bool) -> None:
    """The summary: the sweep in one line, a table of the pickers, what to do with the choice."""
    from rich.markup import escape
    from rich.table import Table

    from paramdoctor.experiments.lr_find import STOP_COMPLETED, STOP_DIVERGED, yaml_number

    sw = result.sweep
    ratio = sw.backbone_ratio
    console.print(f"[bold]paramdoctor lr-find[/]  {escape(result.config_label)}  "
                  f"(run {escape(result.run_name)}, {result.run_id})", highlight=False)
    if sw.stop_reason == STOP_COMPLETED:
        stop = "all steps ran (the loss never diverged; a larger --end shows where it does)"
    elif sw.stop_reason == STOP_DIVERGED:
        stop = f"stopped at step {len(sw.lrs)}: diverged at LR {sw.lrs[-1]:.2g}"
    else:
        stop = f"stopped at step {sw.nonfinite_at}: the loss was not finite"
    console.print(
        f"sweep: head LR {result.spec.start:g} → {result.spec.end:g} over {sw.steps_planned} steps "
        f"(backbone at x{ratio:g} of it), {len(sw.lrs)} recorded, {stop}; {sw.duration_s:.1f} s on {sw.device}",
        highlight=False, markup=False,
    )
    table = Table(title=None)
    for col in ("picker", "head LR", "backbone LR", "note"):
        table.add_column(col, overflow="fold")
    for name, s in result.suggestions.items():
        chosen = name == result.picker
        note = "chosen" if chosen else ""
        if s.reason:
            note = f"{note}: {s.reason}" if note else s.reason
        table.add_row(
            f"[bold]{name} ★[/]" if chosen else name,
            "-" if s.lr is None else (f"[bold]{s.lr:.2g}[/]" if chosen else f"{s.lr:.2g}"),
            "-" if s.lr is None else f"{s.lr * ratio:.2g}",
            escape(note),
        )
    console.print(table)
    current = f"now {yaml_number(result.current_lr)}"
    if result.suggested_lr is None:
        console.print(f"[yellow]no suggestion from {escape(result.picker)}[/]: {escape(result.chosen.reason or '')}")
        if apply:
            console.print("nothing applied")
    else:
        console.print(f"suggested: optimizer.lr = {yaml_number(result.suggested_lr)} ({current})"
                      + ("" if result.backbone_auto else
                         f", optimizer.backbone_lr = {yaml_number(result.suggested_backbone_lr)} "
                         f"(now {yaml_number(result.current_backbone_lr)})"), highlight=False, markup=False)
        if result.applied:
            console.print(f"applied to {escape(result.applied['file'])}:", highlight=False)
            for change in result.applied["changes"]:
                if change["written"]:
                    console.print(f"  {change['key']}: {change['old']} -> {change['new']}", highlight=False, markup=False)
                else:
                    console.print(f"  {change['key']}: {change['new']} (unchanged in the file)", highlight=False, markup=False)
        else:
            sets = [f"optimizer.lr={yaml_number(result.suggested_lr)}"]
            if not result.backbone_auto:
                sets.append(f"optimizer.backbone_lr={yaml_number(result.suggested_backbone_lr)}")
            kept = [o for o in overrides if o.split("=", 1)[0].strip() not in ("optimizer.lr", "optimizer.backbone_lr")]
            target = " ".join([*([config_path] if config_path else []), *kept, *sets])
            console.print(f"train with it:  paramdoctor train {target}", highlight=False, markup=False, soft_wrap=True)
            if config_path:
                console.print(f"or write it:    paramdoctor lr-find {config_path} --apply", highlight=False, markup=False, soft_wrap=True)
    if result.picture:
        console.print(f"picture: {result.picture}", highlight=False, markup=False, soft_wrap=True)
