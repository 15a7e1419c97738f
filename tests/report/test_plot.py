"""curves.png: drawn from records, annotated, robust to NaN and to missing curves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from paramdoctor.record import RunRecord, Series
from paramdoctor.report import plot_curves
from tests.report.diagnoses import healthy_diagnosis, sick_diagnosis

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def epochs(values) -> Series:
    return Series(np.arange(1, len(values) + 1), np.asarray(values, dtype=float))


def record(with_steps: bool = True) -> RunRecord:
    series = {
        "train/loss": epochs([2.0, 1.2, 0.8, 0.5, 0.3, 0.2]),
        "val/loss": epochs([2.1, 1.4, 1.1, 1.2, np.nan, np.inf]),
        "train/acc": epochs([0.3, 0.5, 0.7, 0.8, 0.9, 0.95]),
        "val/acc": epochs([0.3, 0.45, 0.6, 0.58, 0.5, 0.4]),
    }
    if with_steps:
        series["step/loss"] = Series(np.arange(1, 61), np.linspace(2.0, 0.2, 60))
        series["step/lr/head"] = Series(np.arange(1, 61), np.linspace(1e-3, 0, 60))
    return RunRecord(series=series, run_id="r1", run_name="plot-me", meta={"best_epoch": 3})


def test_three_panels_with_step_series_two_without(tmp_path):
    wide = plot_curves(record(), sick_diagnosis(), tmp_path / "a" / "curves.png", dpi=40)
    narrow = plot_curves(record(with_steps=False), healthy_diagnosis(), tmp_path / "b.png", dpi=40)
    assert wide == tmp_path / "a" / "curves.png"
    (w3, h3), (w2, h2) = png_size(wide), png_size(narrow)
    assert h3 == h2 == 160 and w3 == 600 and w2 == 400  # 5 x 4 inches a panel


def test_annotations_change_the_picture(tmp_path):
    """Onsets and the best epoch are drawn: the annotated image differs from the bare one."""
    plain = plot_curves(record(), None, tmp_path / "plain.png", dpi=40).read_bytes()
    annotated = plot_curves(record(), sick_diagnosis(), tmp_path / "annotated.png", dpi=40).read_bytes()
    assert plain != annotated


def test_a_record_without_curves_still_plots(tmp_path):
    empty = RunRecord(series={"val/loss": epochs([np.nan, np.nan])})
    assert png_size(plot_curves(empty, None, tmp_path / "empty.png", dpi=40))[0] == 400


def test_importing_the_reports_loads_neither_matplotlib_nor_mlflow_nor_torch():
    code = (
        "import sys, paramdoctor.report; "
        "print(sorted(m for m in ('matplotlib', 'mlflow', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
