"""Several runs side by side: the config keys that set them apart, what each reached, and one picture.

``paramdoctor compare`` answers "which of these runs was better, and what did
I change?". Everything here is a pure function of run records (and, for the
status column, of their diagnoses), so the table, the JSON and the picture
agree with each other and can be tested without a tracking store.

A run's config is its ``params`` (flat strings as stored) overlaid with its
flattened ``config`` tree; values are compared after reading them as YAML, so
``False``, ``false`` and ``0.0010`` vs ``1e-3`` do not count as differences.
Keys naming a run rather than how it trained (``run_name``, ``output_dir``,
``logging_dir``) never count. A key present in one run and absent in another
differs (shown as ``-``).

Grouping (``--group-by seed``): runs whose configs are equal once ``seed`` is
left out form one group; each number is reported as mean and sample standard
deviation (n-1; null for a group of one) over the group's runs that have it.

matplotlib is imported inside :func:`plot_compare` and drawn on a bare
``Figure`` with the Agg canvas, as :mod:`paramdoctor.report.plot` does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paramdoctor import keys
from paramdoctor.record import RunRecord, Series

if TYPE_CHECKING:
    from paramdoctor.diagnosis import Diagnosis

IDENTITY_LEAVES = ("run_name", "output_dir", "logging_dir")
MISSING = "-"
NUMBERS = ("best", "final", "best_epoch", "time_to_best_s", "epochs_run")
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)


@dataclass
class RunRow:
    """One run's line of the comparison (the ``runs`` entries of ``compare --json``)."""

    run_id: str | None
    run_name: str | None
    source: str
    config_diff: dict[str, str]
    best: float | None
    final: float | None
    best_epoch: float | None
    time_to_best_s: float | None
    epochs_run: int | None
    status: str
    findings: list[str]
    x_unit: str = "epoch"  # what best_epoch counts: epochs, or optimizer steps for step-indexed logs

    @property
    def label(self) -> str:
        return self.run_name or (self.run_id or "")[:8] or self.source

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "source": self.source,
            "config_diff": dict(self.config_diff),
            **{name: getattr(self, name) for name in NUMBERS},
            "status": self.status,
            "findings": list(self.findings),
        }


@dataclass
class Group:
    """Runs that differ only in the grouping key; numbers as {"mean", "std"} over its runs."""

    name: str  # "group 1", ...: short, for the table header and the legend
    label: str
    config: dict[str, str]
    members: list[int]  # indexes into the compared runs
    runs: list[str]
    stats: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "config": dict(self.config), "n": self.n, "runs": list(self.runs), **self.stats}


# --- configs ---------------------------------------------------------------------


def flat_config(record: RunRecord) -> dict[str, str]:
    """The run's config as ``dotted.key -> text``: params overlaid with the flattened config tree."""
    from paramdoctor.config import flatten

    flat: dict[str, Any] = {str(k): _parsed(v) for k, v in record.params.items()}
    flat.update({k: _parsed(v) for k, v in flatten(record.config or {}).items()})
    return {k: _text(v) for k, v in flat.items() if k.rpartition(".")[2] not in IDENTITY_LEAVES}


def differing_keys(configs: list[dict[str, str]], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Sorted keys whose value is not the same in every config (absent counts as a value)."""
    every = sorted(set().union(*configs)) if configs else []
    return [k for k in every if k not in ignore and len({c.get(k, MISSING) for c in configs}) > 1]


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        from paramdoctor.config.loading import parse_value

        return parse_value(value)
    return value


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


# --- numbers ---------------------------------------------------------------------


def metric_and_mode(records: list[RunRecord], metric: str | None) -> tuple[str, str]:
    """``--metric`` or the first run's monitor, and whether higher ("max") or lower ("min") is better."""
    from paramdoctor.engine.context import monitor_of

    monitor, mode = monitor_of(records[0])
    if metric is None or metric == monitor:
        return monitor, mode
    return metric, keys.metric_mode(metric) or ("min" if metric.endswith("loss") else "max")


def run_row(
    record: RunRecord, diag: "Diagnosis | None", metric: str, mode: str, diff_keys: list[str], config: dict[str, str]
) -> RunRow:
    """The metric's best and final value, the best x, time to best and epochs run, and the doctor's verdict."""
    series = record.get(metric)
    best = final = best_x = None
    if series is not None:
        values, steps = series.values, series.steps
        final = float(values[-1])
        finite = np.isfinite(values)
        if finite.any():
            pick = np.nanargmax if mode == "max" else np.nanargmin
            i = int(pick(np.where(finite, values, np.nan)))
            best, best_x = float(values[i]), float(steps[i])
    return RunRow(
        run_id=record.run_id,
        run_name=record.run_name,
        source=record.source,
        config_diff={k: config.get(k, MISSING) for k in diff_keys},
        best=best,
        final=final,
        best_epoch=best_x,
        time_to_best_s=_time_to_best(record, best_x),
        epochs_run=_epochs_run(record, diag),
        status=diag.status if diag is not None else "unknown",
        findings=[f.code for f in diag.findings] if diag is not None else [],
        x_unit=record.x_unit,
    )


def _time_to_best(record: RunRecord, best_x: float | None) -> float | None:
    times = record.get(keys.EPOCH_TIME)
    if times is None or best_x is None or record.x_unit != "epoch":
        return None
    upto = times.values[(times.steps <= best_x) & np.isfinite(times.values)]
    return float(upto.sum()) if upto.size else None


def _epochs_run(record: RunRecord, diag: "Diagnosis | None") -> int | None:
    value = (diag.summary if diag is not None else {}).get("epochs_run")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    if record.x_unit != "epoch":
        return None
    lengths = [int(s.steps.max()) for k in (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.VAL_ACC) if (s := record.get(k))]
    return max(lengths) if lengths else None


# --- groups ----------------------------------------------------------------------


def group_rows(rows: list[RunRow], configs: list[dict[str, str]], key: str) -> list[Group]:
    """Runs whose configs match once ``key`` is left out, in order of first appearance, with mean/std numbers."""
    split = differing_keys(configs, ignore=(key,))
    groups: dict[tuple, Group] = {}
    for i, config in enumerate(configs):
        signature = tuple(config.get(k, MISSING) for k in split)
        if signature not in groups:
            shown = dict(zip(split, signature))
            label = ", ".join(f"{k}={v}" for k, v in shown.items()) or "all runs"
            groups[signature] = Group(name=f"group {len(groups) + 1}", label=label, config=shown, members=[], runs=[])
        groups[signature].members.append(i)
        groups[signature].runs.append(rows[i].label)
    for group in groups.values():
        for name in NUMBERS:
            values = [v for i in group.members if isinstance(v := getattr(rows[i], name), (int, float)) and math.isfinite(v)]
            group.stats[name] = _mean_std(values)
    return list(groups.values())


def _mean_std(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else None}


# --- the picture -----------------------------------------------------------------


def plot_compare(
    records: list[RunRecord],
    labels: list[str],
    metric: str,
    path: str | Path,
    *,
    groups: list[Group] | None = None,
    dpi: int = 100,
) -> Path:
    """Overlay the runs' curves in 2x2 panels (train loss, val loss, ``metric``, learning rate) into ``path``.

    One colour per run, or per group with its mean curve and a min-max band.
    A panel with no curve says so instead of staying blank.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11.0, 8.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).reshape(-1)
    title = f"{len(records)} runs" + (f" in {len(groups)} groups" if groups is not None else "")
    fig.suptitle(f"compare {title}: {metric}", fontsize=11)

    sets = [(f"{g.name} (n={g.n}): {_shorten(', '.join(g.runs))}", g.members) for g in groups] if groups is not None else [
        (label, [i]) for i, label in enumerate(labels)
    ]
    panels = ((keys.TRAIN_LOSS, "train loss"), (keys.VAL_LOSS, "val loss"), (metric, metric), (None, "learning rate"))
    for ax, (key, name) in zip(axes, panels):
        drawn = False
        for n, (label, members) in enumerate(sets):
            curves = [_lr(records[i]) if key is None else (records[i].get(key), records[i].x_unit) for i in members]
            curves = [(s, unit) for s, unit in curves if s is not None]
            if curves:
                _draw(ax, [s for s, _ in curves], PALETTE[n % len(PALETTE)], label)
                drawn = True
                ax.set_xlabel(curves[0][1])
        ax.set_title(name, fontsize=10)
        if not drawn:
            ax.text(0.5, 0.5, f"no {name} logged", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        if key != metric and _spans_decades(ax):
            ax.set_yscale("log")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    fig.savefig(path, format="png")
    return path


def _shorten(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lr(record: RunRecord) -> tuple[Series | None, str]:
    """The first learning-rate curve: per epoch when logged, else per step."""
    for prefix, unit in ((keys.EPOCH_LR_PREFIX, "epoch"), (keys.STEP_LR_PREFIX, "optimizer step")):
        found = record.keys_with_prefix(prefix)
        if found:
            return record.series[found[0]], unit
    return None, ""


def _draw(ax: Any, curves: list[Series], colour: str, label: str) -> None:
    if len(curves) == 1:
        s = curves[0]
        marker = "o" if len(s) <= 40 else None
        ax.plot(s.steps, np.where(np.isfinite(s.values), s.values, np.nan), color=colour, marker=marker,
                markersize=3, linewidth=1.2, label=label)
        return
    x = np.unique(np.concatenate([s.steps for s in curves]))
    table = np.full((len(curves), x.size), np.nan)
    for row, s in enumerate(curves):
        finite = np.isfinite(s.values)
        table[row, np.searchsorted(x, s.steps[finite])] = s.values[finite]
    present = np.isfinite(table).any(axis=0)
    x, table = x[present], table[:, present]
    with np.errstate(all="ignore"):
        mean, low, high = np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.plot(x, mean, color=colour, linewidth=1.5, label=f"{label} mean")


def _spans_decades(ax: Any) -> bool:
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.empty(0)])
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() / values.min() > 100)
