"""The terminal report: one snapshot of what people read, plain assertions for the rest."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.console import Console

from paramdoctor.diagnosis import Evidence, Finding
from paramdoctor.report import render_diagnosis, render_summary_table
from tests.report.diagnoses import foreign_diagnosis, healthy_diagnosis, sick_diagnosis

SNAPSHOTS = Path(__file__).parent / "snapshots"


def rendered(diag, **kwargs) -> str:
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None, force_terminal=False)
    render_diagnosis(diag, console, **kwargs)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def test_snapshot_of_a_diagnosis_with_findings():
    """Set PARAMDOCTOR_UPDATE_SNAPSHOTS=1 to rewrite the snapshot after a deliberate change, then review the diff."""
    text = rendered(sick_diagnosis(), run_ref="overfit-run")
    path = SNAPSHOTS / "terminal_findings.txt"
    if os.environ.get("PARAMDOCTOR_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_findings_are_ordered_by_severity_with_evidence():
    text = rendered(sick_diagnosis())
    assert "2 findings (1 error, 1 warning)" in text
    assert text.index("PD201") < text.index("PD401")  # error before warning, though the engine listed PD401 first
    assert "val/loss bottomed at 0.60 in epoch 7 of 20" in text
    assert "(from epoch 10)" in text  # onset added when the sentence does not say it
    assert "(from epoch 7)" not in text  # ... and not repeated when it does


def test_skipped_rules_prescription_and_next_command():
    text = rendered(sick_diagnosis(), next_config_path="out/next.yaml")
    assert "could not judge" in text and "PD302 loss-spikes: needs step/grad_norm" in text
    assert "optimizer.weight_decay" in text and "0.0005" in text and "0.005" in text
    assert "conflict: PD401 asked for early_stopping.patience=3" in text
    assert "paramdoctor train out/next.yaml" in text


def test_healthy_verdict_in_green():
    console = Console(file=io.StringIO(), width=100, record=True, force_terminal=True, color_system="standard")
    render_diagnosis(healthy_diagnosis(), console)
    text = console.export_text()
    assert "HEALTHY" in text and "no findings" in text
    assert "prescription: no changes" in text
    assert "\x1b[1;32mHEALTHY" in console.file.getvalue()  # bold green


def test_text_from_rules_is_never_read_as_markup():
    diag = sick_diagnosis()
    diag.findings = [
        Finding(
            "PD999", "odd", "unstable", "info", "title [bold]x[/bold]",
            Evidence("loss [red]1.0[/red]"), "why [b]", "fix",
        )
    ]
    text = rendered(diag)
    assert "title [bold]x[/bold]" in text and "loss [red]1.0[/red]" in text


def test_summary_table_for_an_experiment():
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    render_summary_table(
        [
            {
                "run": "a (12345678)",
                "state": "FINISHED",
                "verdict": "findings",
                "findings": "PD201, PD401",
                "best": "val/acc 0.8 @ 9",
            },
            {"run": "b (87654321)", "state": "FAILED", "verdict": "healthy", "findings": "", "best": "-"},
        ],
        console,
        title="experiment x: 2 runs, 1 with findings",
    )
    text = console.export_text()
    assert "experiment x: 2 runs, 1 with findings" in text
    assert "PD201, PD401" in text and "val/acc 0.8 @ 9" in text and "FAILED" in text


def _table_lines(text: str, title: str) -> list[str]:
    """The lines of the table under ``title`` (up to its closing border)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    return lines[start : end + 1]


def test_a_run_from_another_tool_gets_a_second_table_in_its_terms():
    text = rendered(foreign_diagnosis("lightning"), run_ref="metrics.csv")
    table = "\n".join(_table_lines(text, "prescription in lightning terms"))
    assert "configure_optimizers:" in table and "0.0001" in table and "0.001" in table  # 10x the run's own 1e-4
    assert "EarlyStopping" not in table  # the sick diagnosis changes no early stopping ...
    assert "no equivalent" in table and "nn.Dropout" in table  # ... and dropout lives in the user's module
    assert "next.lightning.yaml" in text  # --write would also write the tool's settings


def test_a_relative_change_without_the_runs_value_shows_the_factor():
    text = rendered(foreign_diagnosis("hf_trainer", own_values={}))
    table = _table_lines(text, "prescription in hf_trainer terms")
    row = next(line for line in table if line.startswith("│ weight_decay"))
    assert "?" in row and "x10" in row  # the log did not say the weight decay: say "10x yours"


def test_tool_table_absent_for_paramdoctor_runs_and_plain_logs():
    assert " terms" not in rendered(sick_diagnosis())
    csv = foreign_diagnosis("csv")  # no vocabulary of its own: the table would repeat paramdoctor's
    assert csv.prescription.tool is not None and " terms" not in rendered(csv)


def test_written_tool_settings_are_named():
    text = rendered(foreign_diagnosis("keras"), next_config_path="o/next.yaml", tool_patch_path="o/next.keras.yaml")
    assert "keras settings written to o/next.keras.yaml" in text and "paramdoctor train o/next.yaml" in text
