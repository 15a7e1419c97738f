"""The annotated ``curves.png``: loss and accuracy per epoch, the best epoch, where each finding began.

matplotlib is imported inside :func:`plot_curves` and drawn with the Agg canvas
on a bare ``Figure`` (no pyplot state, no display needed), so importing the
report package stays cheap and plotting works on headless machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paramdoctor import keys
from paramdoctor.diagnosis import Diagnosis
from paramdoctor.record import RunRecord, Series
from paramdoctor.report.common import ordered_findings

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d62728"
LR_COLOUR = "#2ca02c"
ONSET_COLOUR = "#7f7f7f"
BEST_COLOUR = "#2ca02c"


def plot_curves(record: RunRecord, diag: Diagnosis | None, path: str | Path, *, dpi: int = 100) -> Path:
    """Draw the curves of ``record`` annotated with ``diag`` into ``path`` (PNG) and return the path.

    Panels: loss (train/val) and accuracy (train/val) against the record's x
    unit; a third with ``step/loss`` and the learning rate when they were
    logged. Non-finite values leave a gap and are marked with a red ``x`` at
    the panel's top edge, so a divergence is visible rather than hidden.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step_panel = record.get(keys.STEP_LOSS) is not None or bool(record.keys_with_prefix(keys.STEP_LR_PREFIX))
    n_panels = 3 if step_panel else 2
    fig = Figure(figsize=(5.0 * n_panels, 4.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels)
    unit = record.x_unit
    title = record.run_name or record.run_id or "run"
    fig.suptitle(f"{title}: {diag.status if diag else 'curves'}", fontsize=11)

    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        drawn = False
        for split, colour in (("train", TRAIN_COLOUR), ("val", VAL_COLOUR)):
            series = record.get(f"{split}/{metric}")
            if series is not None:
                drawn |= _line(ax, series, colour, f"{split}/{metric}")
        ax.set_xlabel(unit)
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
        if not drawn:
            ax.text(
                0.5, 0.5, f"no {label} curves logged", ha="center", va="center", transform=ax.transAxes, color="grey"
            )
            continue
        if metric == "loss":
            _maybe_log_scale(ax, record, ("train/loss", "val/loss"))
        _annotate(ax, record, diag)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)

    if step_panel:
        _step_panel(axes[2], record)
        if record.x_unit != "step":  # step-level findings (spikes, noise) are marked here, not on the epoch axes
            _mark_onsets(axes[2], diag, "step")
    fig.savefig(path, format="png")
    return path


def _line(ax: Any, series: Series, colour: str, label: str) -> bool:
    x, y = series.steps, series.values
    finite = np.isfinite(y)
    if not finite.any():
        ax.plot([], [], color=colour, label=f"{label} (no finite values)")
    else:
        marker = "o" if len(x) <= 40 else None
        ax.plot(x, np.where(finite, y, np.nan), color=colour, marker=marker, markersize=3, label=label)
    bad = ~finite
    if bad.any():
        # Non-finite points: an x at the top edge (axes coordinates for y, data for x).
        top_edge = ax.get_xaxis_transform()
        ax.plot(
            x[bad], np.full(bad.sum(), 0.97), linestyle="none", marker="x", color="red", transform=top_edge,
            label=f"{label} non-finite",
        )
    return True


def _maybe_log_scale(ax: Any, record: RunRecord, names: tuple[str, ...]) -> None:
    values = np.concatenate([s.values for n in names if (s := record.get(n)) is not None])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")


def _annotate(ax: Any, record: RunRecord, diag: Diagnosis | None) -> None:
    best = _best_x(record, diag)
    if best is not None:
        ax.axvline(best, color=BEST_COLOUR, linestyle="--", linewidth=1, label=f"best {record.x_unit} {best:g}")
    if diag is None:
        return
    _mark_onsets(ax, diag, record.x_unit)


def _mark_onsets(ax: Any, diag: Diagnosis | None, unit: str) -> None:
    """A dotted line at each finding's onset, on the panel whose x axis is in that finding's unit."""
    if diag is None:
        return
    onsets: dict[float, list[str]] = {}
    for finding in ordered_findings(diag.findings):
        onset = finding.evidence.onset
        if onset is not None and np.isfinite(onset) and finding.evidence.x_unit == unit:
            onsets.setdefault(float(onset), []).append(finding.code)
    for onset, codes in sorted(onsets.items()):
        ax.axvline(onset, color=ONSET_COLOUR, linestyle=":", linewidth=1)
        ax.text(onset, 0.02, " " + ",".join(codes), rotation=90, va="bottom", ha="right", fontsize=7,
                color=ONSET_COLOUR, transform=ax.get_xaxis_transform())


def _best_x(record: RunRecord, diag: Diagnosis | None) -> float | None:
    for source in ((diag.summary if diag else {}), record.meta):
        value = source.get("best_epoch")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def _step_panel(ax: Any, record: RunRecord) -> None:
    ax.set_title("per step", fontsize=10)
    ax.set_xlabel("optimizer step")
    loss = record.get(keys.STEP_LOSS)
    if loss is not None:
        _line(ax, loss, TRAIN_COLOUR, keys.STEP_LOSS)
        ax.set_ylabel("loss")
        ax.legend(fontsize=8, loc="upper left")
    lr_keys = record.keys_with_prefix(keys.STEP_LR_PREFIX)
    if lr_keys:
        lr_ax = ax.twinx() if loss is not None else ax
        for key in lr_keys[:4]:
            s = record.series[key]
            lr_ax.plot(s.steps, s.values, color=LR_COLOUR, linewidth=1, alpha=0.8, label=key)
        lr_ax.set_ylabel("learning rate")
        lr_ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
