"""The diagnosis as Markdown (``diagnosis.md``): the terminal report's content, for files and the MLflow UI.

Run names, experiments, evidence and notes come from the run and from rule
files, so every string embedded in the document goes through :func:`_md`:
it stays on its line and inside its table cell, and renders as the text it
is (no HTML, links, emphasis or headings of its own). The next config needs
no escaping in its fenced block: block-style YAML indents every value of a
section, so no line of it can close the fence.
"""

from __future__ import annotations

import re

from paramdoctor.config import dump_yaml
from paramdoctor.diagnosis import Diagnosis
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


def diagnosis_markdown(
    diag: Diagnosis, *, curves_image: str | None = None, next_config_name: str = DEFAULT_NEXT_CONFIG
) -> str:
    """Markdown text; ``curves_image`` is a relative link to the curves PNG, shown when given."""
    out: list[str] = [f"# Diagnosis: {_md(run_label(diag))}", ""]
    out.append(f"**{_md(verdict(diag))}**" + ("" if diag.source == "paramdoctor" else f" (curves from {_md(diag.source)})"))
    out.append("")
    if diag.interrupted:
        out += [_md(diag.interrupted), ""]
    if diag.missing and not diag.findings and not diag.interrupted:
        out += [f"Missing: {_md(diag.missing)}", ""]
    if diag.eval_sets:
        out += [f"Evaluation sets judged: {_md(', '.join(diag.eval_sets))}", ""]
    items = summary_items(diag)
    if items:
        out += ["| | |", "|---|---|"] + [f"| {_md(label)} | {_md(text)} |" for label, text in items] + [""]
    if curves_image:
        out += [f"![curves]({curves_image})", ""]
    if diag.findings:
        out += ["## Findings", ""]
    for number, f in enumerate(ordered_findings(diag.findings), start=1):
        where = f" {_md(finding_heading(f))}" if f.eval_set else ""
        out.append(f"### {number}. {_md(f.code)} {_md(f.slug)} ({_md(f.severity)}, {_md(f.category)}){where}")
        out.append("")
        out.append(f"**{_md(f.title)}**")
        out.append("")
        onset = onset_text(f)
        since = f" (from {_md(onset)})" if onset and onset not in f.evidence.message else ""
        out.append(f"- **Evidence:** {_md(f.evidence.message)}{since}")
        if f.why:
            out.append(f"- **Why it matters:** {_md(f.why)}")
        if f.fix:
            out.append(f"- **What to change:** {_md(f.fix)}")
        out.append("")
    if diag.skipped:
        out += ["## Could not judge", ""]
        out += [f"- {_md(s.code)} {_md(s.slug)}: {_md(s.reason)}" for s in diag.skipped]
        out.append("")
    rx = diag.prescription
    out += ["## Prescription", ""]
    if rx.changes:
        out += ["| key | now | next | why | rule |", "|---|---|---|---|---|"]
        out += [
            f"| `{_code(c.key)}` | {_md(fmt_value(c.old))} | **{_md(fmt_value(c.new))}** | {_md(c.reason + (f' ({c.note})' if c.note else ''))} | {_md(c.rule)} |"
            for c in rx.changes
        ]
        out.append("")
    else:
        out += ["No changes.", ""]
    if rx.conflicts:
        out += [f"- Conflict: {_md(c)}" for c in rx.conflicts] + [""]
    if shows_tool_terms(diag) and rx.tool is not None:
        out += [f"### The same changes {_md(tool_title(rx.tool))}", ""]
        out += ["| setting | now | next | note |", "|---|---|---|---|"]
        out += [f"| `{_code(key)}` | {_md(now)} | **{_md(new)}** | {_md(note)} |" for key, now, new, note in tool_rows(rx.tool)]
        out.append("")
    if rx.next_config:
        out += [f"Next config (`{_code(next_config_name)}`):", "", "```yaml", dump_yaml(rx.next_config).rstrip(), "```", ""]
        out += ["Train it:", "", "```sh", TRAIN_HINT.format(path=next_config_name), "```", ""]
    return "\n".join(out)


def _code(text: str) -> str:
    """Text inside a backtick span in a table cell: only the pipe and backticks need care."""
    return _LINE_BREAK.sub(" ", str(text)).replace("|", "\\|").replace("`", "'")


# Inline Markdown syntax (code spans, emphasis, links, images, strikethrough, table
# cells, heading closers, escapes): backslash-escaped. HTML: written as entities.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
_HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")


def _md(text: object) -> str:
    """User-controlled text as Markdown that renders literally, on one line, without breaking a table row."""
    if text is None or text == "":
        return ""
    text = _LINE_BREAK.sub(" ", str(text))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return "".join(_HTML_SPECIAL.get(ch, ch) for ch in text)
