"""diagnosis.md: strings from the run (its name, stop reason, monitored metric, evidence) cannot change
the document's structure: no raw HTML, no extra headings, rows or cells, no links or emphasis of their own.

(diagnosis.html escapes with html.escape: tests/report/test_documents.py.)"""

from __future__ import annotations

import re

from paramdoctor.diagnosis import Skipped
from paramdoctor.report import diagnosis_markdown
from tests.report.diagnoses import sick_diagnosis

_PIPE = re.compile(r"(?<!\\)[|]")  # an unescaped pipe: a cell border
HOSTILE = "<script>alert(1)</script> # x\n| a | **b** [c](http://e.x) `d` ~~e~~ &amp;"


def _outside_code(md: str) -> list[str]:
    """The lines outside fenced code blocks (CommonMark: a fence closes on a line of at least as many backticks)."""
    lines, fence = [], ""
    for line in md.splitlines():
        if fence:
            if line.strip() and set(line.strip()) == {"`"} and len(line.strip()) >= len(fence):
                fence = ""
                lines.append(line)
            continue
        if line.startswith("```"):
            fence = line[: len(line) - len(line.lstrip("`"))]
        lines.append(line)
    return lines


def _structure(md: str) -> list[str]:
    """Each line's structural marker outside code blocks: heading level, table row, list item, fence, or plain."""
    kinds = []
    for line in _outside_code(md):
        if line.startswith("#"):
            kinds.append(line.split(" ", 1)[0])
        elif line.startswith("|"):
            kinds.append(f"row:{len(_PIPE.findall(line))}")
        elif line.startswith("- "):
            kinds.append("item")
        elif line.startswith("```"):
            kinds.append("fence")
        else:
            kinds.append("text" if line else "")
    return kinds


def _hostile_diagnosis(text: str = HOSTILE, monitor: str = "val/acc</td><td>"):
    diag = sick_diagnosis()
    diag.run_name = text
    diag.summary["stop_reason"] = text
    diag.summary["monitor"] = monitor
    diag.findings[0].evidence.message = text
    diag.findings[0].fix = text
    diag.skipped = [Skipped(code="PD302", slug="loss-spikes", reason=text)]
    diag.prescription.changes[0].reason = text
    return diag


def test_hostile_run_strings_keep_the_structure_and_render_as_text():
    md = diagnosis_markdown(_hostile_diagnosis())
    assert _structure(md) == _structure(diagnosis_markdown(_hostile_diagnosis("plain words", "val/acc")))
    outside = "\n".join(_outside_code(md))
    assert "<script>" not in outside and "</td>" not in outside
    assert md.splitlines()[0].startswith("# Diagnosis: &lt;script&gt;alert(1)&lt;/script&gt; \\# x \\| a \\|")
    assert "&amp;amp;" in md  # an entity in the name shows as written, it is not decoded
    assert "\\*\\*b\\*\\*" in md and "\\[c\\](http://e.x)" in md and "\\`d\\`" in md and "\\~\\~e\\~\\~" in md


def test_a_run_named_like_a_table_row_or_heading_stays_in_the_heading():
    diag = sick_diagnosis()
    diag.run_id = None
    diag.run_name = "# x\n| a | ##"  # a heading's trailing #s would otherwise be read as its closing sequence
    md = diagnosis_markdown(diag)
    assert md.splitlines()[0] == "# Diagnosis: \\# x \\| a \\| \\#\\#"
    assert not any(line.startswith("| a") for line in md.splitlines())
