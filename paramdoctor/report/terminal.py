"""The diagnosis as people read it in a terminal (rich).

Everything goes through the ``Console`` passed in, so the CLI prints to the
screen and tests capture text with ``Console(file=io.StringIO(), width=100)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from paramdoctor.diagnosis import Diagnosis, Finding
from paramdoctor.report.common import (
    DEFAULT_NEXT_CONFIG,
    TRAIN_HINT,
    finding_heading,
    fmt_value,
    onset_text,
    ordered_findings,
    run_label,
    summary_items,
    verdict,
)
from paramdoctor.report.tool import shows_tool_terms, tool_rows, tool_title
from paramdoctor.report.tool import tool_patch_path as patch_path_for

SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def render_diagnosis(
    diag: Diagnosis,
    console: Console,
    *,
    next_config_path: str | None = None,
    run_ref: str | None = None,
    notes: Iterable[str] = (),
    tool_patch_path: str | None = None,
) -> None:
    """Verdict, findings by severity, rules that could not judge, the prescription, the next command.

    ``next_config_path`` is where the next config was written (``--write``);
    without it the closing hint shows how to write it, using ``run_ref``. For
    a run from another tool the prescription is shown a second time in that
    tool's terms; ``tool_patch_path`` is where ``--write`` put it as a patch.
    """
    _header(diag, console, notes)
    for number, finding in enumerate(ordered_findings(diag.findings), start=1):
        _finding(number, finding, console)
    if diag.skipped:
        console.print()
        console.print("[bold]could not judge[/]")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(ratio=1)
        for skipped in diag.skipped:
            grid.add_row("", skipped.code, Text(f"{skipped.slug}: {skipped.reason}"))
        console.print(grid)
    _prescription(diag, console, next_config_path=next_config_path, run_ref=run_ref, tool_patch_path=tool_patch_path)


def _header(diag: Diagnosis, console: Console, notes: Iterable[str]) -> None:
    title = Text("paramdoctor diagnose  ", style="bold")
    title.append(run_label(diag))
    if diag.source != "paramdoctor":
        title.append(f"  (curves from {diag.source})", style="dim")
    console.print(title)
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    if diag.interrupted:
        line = Text.assemble(("INTERRUPTED", "bold magenta"), " ", ("not judged: the trainer died mid-run", "magenta"))
    elif diag.findings:
        serious = any(f.severity in ("critical", "error") for f in diag.findings)
        line = Text(verdict(diag), style="bold red" if serious else "bold yellow")
    elif diag.missing:
        line = Text.assemble(("NO VALIDATION CURVE", "bold magenta"), " ", ("not judged healthy", "magenta"))
    else:
        line = Text.assemble(("HEALTHY", "bold green"), " ", ("no findings", "green"))
    if diag.skipped:  # a healthy verdict from few rules is weaker: say how many could not judge
        n = len(diag.skipped)
        line.append(f"  ({n} rule{'s' if n != 1 else ''} could not judge)", style="dim")
    console.print(line)
    if diag.interrupted:
        console.print(Text(diag.interrupted, style="magenta"))
    if diag.missing and not diag.findings and not diag.interrupted:
        console.print(Text(f"missing: {diag.missing}", style="magenta"))
    if diag.eval_sets:
        console.print(Text(f"evaluation sets judged: {', '.join(diag.eval_sets)}", style="dim"))
    items = summary_items(diag)
    if items:  # columns, so a long summary wraps between facts, never inside one
        console.print(Columns([Text(f"{label} {text}", style="dim") for label, text in items], padding=(0, 3)))


def _finding(number: int, finding: Finding, console: Console) -> None:
    console.print()
    head = Text(f"{number}. ")
    head.append(finding.code, style="bold")
    head.append(f" {finding.slug} ")
    head.append(f"[{finding.severity}]", style=SEVERITY_STYLE.get(finding.severity, ""))
    head.append(f" {finding.category}", style="dim")
    if finding.eval_set:
        head.append(f"  {finding_heading(finding)}", style="bold cyan")
    console.print(head)
    onset = onset_text(finding)
    since = f" (from {onset})" if onset and onset not in finding.evidence.message else ""
    evidence = finding.evidence.message + since
    # A grid keeps wrapped lines under their own text instead of back at the margin.
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=2)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row("", "", Text(finding.title, style="bold"))
    for label, text in (("evidence:", evidence), ("why:", finding.why), ("fix:", finding.fix)):
        if text:
            grid.add_row("", label, Text(text.strip()))
    console.print(grid)


def _prescription(
    diag: Diagnosis, console: Console, *, next_config_path: str | None, run_ref: str | None, tool_patch_path: str | None
) -> None:
    rx = diag.prescription
    console.print()
    if not rx.changes:
        console.print("[bold]prescription[/]: no changes" + (" (train it again as it is)" if diag.findings else ""))
    else:
        table = Table(title="prescription: the next config", title_justify="left", title_style="bold", show_lines=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("now", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("next", style="green", no_wrap=True)
        table.add_column("why")
        table.add_column("rule", style="dim", no_wrap=True)
        for change in rx.changes:
            table.add_row(
                escape(change.key),
                escape(fmt_value(change.old)),
                "→",
                escape(fmt_value(change.new)),
                escape(change.reason + (f" [{change.note}]" if change.note else "")),
                escape(change.rule),
            )
        console.print(table)
    for conflict in rx.conflicts:
        console.print(f"[yellow]conflict:[/] {escape(conflict)}")
    tool_terms = shows_tool_terms(diag)
    if tool_terms:
        _tool_table(diag, console)
    if tool_patch_path:
        console.print(f"{rx.tool.name if rx.tool else 'tool'} settings written to [bold]{escape(tool_patch_path)}[/]")
    if not rx.next_config:
        return
    console.print()
    if next_config_path:
        console.print(f"next config written to [bold]{escape(next_config_path)}[/]; train it with:")
        console.print(f"  [bold]{escape(TRAIN_HINT.format(path=next_config_path))}[/]")
    else:
        ref = run_ref or diag.run_id or "RUN"
        console.print("write the next config and train it with:")
        console.print(f"  [bold]paramdoctor diagnose {escape(ref)} --write {DEFAULT_NEXT_CONFIG}[/]")
        console.print(f"  [bold]{escape(TRAIN_HINT.format(path=DEFAULT_NEXT_CONFIG))}[/]")
        if tool_terms and rx.tool is not None:
            beside = patch_path_for(Path(DEFAULT_NEXT_CONFIG), rx.tool.name)
            console.print(f"[dim](--write also writes the {escape(rx.tool.name)} settings above to {escape(str(beside))})[/]")


def _tool_table(diag: Diagnosis, console: Console) -> None:
    """The prescription again, in the names of the tool the run came from."""
    tool = diag.prescription.tool
    assert tool is not None
    console.print()
    table = Table(title=f"prescription {tool_title(tool)}", title_justify="left", title_style="bold")
    table.add_column("setting", style="bold", overflow="fold")
    table.add_column("now", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("next", style="green", no_wrap=True)
    table.add_column("note", overflow="fold")
    for key, now, new, note in tool_rows(tool):
        table.add_row(escape(key), escape(now), "→", escape(new), escape(note))
    console.print(table)


def render_summary_table(rows: list[dict[str, str]], console: Console, *, title: str) -> None:
    """One line per run for ``diagnose --experiment NAME``: run, state, verdict, findings, best metric."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in ("run", "state", "verdict", "findings", "best"):
        table.add_column(column, no_wrap=column in ("state", "verdict"))
    for row in rows:
        style = "green" if row.get("verdict") == "healthy" else "red"
        table.add_row(
            escape(row.get("run", "")),
            escape(row.get("state", "")),
            Text(row.get("verdict", ""), style=style),
            escape(row.get("findings", "")),
            escape(row.get("best", "")),
        )
    console.print(table)
