"""The diagnosis as one self-contained HTML page (``diagnosis.html``) for the MLflow UI's artifact viewer.

Inline CSS, the curves PNG embedded as a base64 data URI, no scripts and no
external URLs: the page renders the same offline, in a sandboxed iframe, or
attached to a bug report.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from paramdoctor.config import dump_yaml
from paramdoctor.diagnosis import Diagnosis
from paramdoctor.report.common import (
    DEFAULT_NEXT_CONFIG,
    TRAIN_HINT,
    fmt_value,
    finding_heading,
    onset_text,
    ordered_findings,
    run_label,
    summary_items,
    verdict,
)
from paramdoctor.report.tool import shows_tool_terms, tool_rows, tool_title

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222;max-width:70rem}
h1{font-size:1.3rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ddd}
.verdict{font-weight:bold;font-size:1.1rem;padding:.3rem .6rem;border-radius:4px;display:inline-block}
.healthy{background:#e6f4ea;color:#137333} .findings{background:#fce8e6;color:#a50e0e} .no_validation{background:#f3e8fd;color:#681da8}
.finding{border-left:4px solid #999;padding:.3rem .8rem;margin:.8rem 0;background:#fafafa}
.critical{border-color:#7b0000} .error{border-color:#d93025} .warning{border-color:#f29900} .info{border-color:#1a73e8}
.sev{font-size:.8rem;text-transform:uppercase;font-weight:bold} .dim{color:#666}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f4} code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto} img{max-width:100%;border:1px solid #eee}
"""


def diagnosis_html(
    diag: Diagnosis, *, curves_png: str | Path | None = None, next_config_name: str = DEFAULT_NEXT_CONFIG
) -> str:
    """The whole page as a string; ``curves_png`` (a PNG file) is embedded when given and present."""
    e = escape
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>paramdoctor: {e(run_label(diag))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>paramdoctor diagnosis: {e(run_label(diag))}</h1>",
        f'<div class="verdict {e(diag.status)}">{e(verdict(diag))}</div>',
    ]
    if diag.source != "paramdoctor":
        parts.append(f'<p class="dim">curves from {e(diag.source)}</p>')
    if diag.interrupted:
        parts.append(f"<p><b>Interrupted:</b> {e(diag.interrupted)}</p>")
    if diag.missing and not diag.findings and not diag.interrupted:
        parts.append(f"<p><b>Missing:</b> {e(diag.missing)}</p>")
    if diag.eval_sets:
        parts.append(f'<p class="dim">evaluation sets judged: {e(", ".join(diag.eval_sets))}</p>')
    items = summary_items(diag)
    if items:
        parts.append("<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in items) + "</table>")
    image = _png_data_uri(curves_png)
    if image:
        parts.append(f'<h2>Curves</h2><img alt="training curves annotated with the findings" src="{image}">')
    if diag.findings:
        parts.append("<h2>Findings</h2>")
    for number, f in enumerate(ordered_findings(diag.findings), start=1):
        onset = onset_text(f)
        since = f" (from {e(onset)})" if onset and onset not in f.evidence.message else ""
        parts.append(
            f'<div class="finding {e(f.severity)}">'
            f'<div><b>{number}. {e(f.code)}</b> {e(f.slug)} <span class="sev">{e(f.severity)}</span> '
            f'<span class="dim">{e(f.category)}</span>'
            + (f' <b>{e(finding_heading(f))}</b>' if f.eval_set else "")
            + "</div>"
            f"<div><b>{e(f.title)}</b></div>"
            f"<p><b>Evidence:</b> {e(f.evidence.message)}{since}</p>"
            + (f"<p><b>Why it matters:</b> {e(f.why)}</p>" if f.why else "")
            + (f"<p><b>What to change:</b> {e(f.fix)}</p>" if f.fix else "")
            + "</div>"
        )
    if diag.skipped:
        parts.append("<h2>Could not judge</h2><ul>")
        parts += [f"<li><code>{e(s.code)}</code> {e(s.slug)}: {e(s.reason)}</li>" for s in diag.skipped]
        parts.append("</ul>")
    rx = diag.prescription
    parts.append("<h2>Prescription</h2>")
    if rx.changes:
        parts.append("<table><tr><th>key</th><th>now</th><th>next</th><th>why</th><th>rule</th></tr>")
        parts += [
            f"<tr><td><code>{e(c.key)}</code></td><td>{e(fmt_value(c.old))}</td><td><b>{e(fmt_value(c.new))}</b></td>"
            f"<td>{e(c.reason)}{f' <i>({e(c.note)})</i>' if c.note else ''}</td><td>{e(c.rule)}</td></tr>"
            for c in rx.changes
        ]
        parts.append("</table>")
    else:
        parts.append("<p>No changes.</p>")
    parts += [f"<p><b>Conflict:</b> {e(c)}</p>" for c in rx.conflicts]
    if shows_tool_terms(diag) and rx.tool is not None:
        parts.append(f"<h3>The same changes {e(tool_title(rx.tool))}</h3>")
        parts.append("<table><tr><th>setting</th><th>now</th><th>next</th><th>note</th></tr>")
        parts += [
            f"<tr><td><code>{e(key)}</code></td><td>{e(now)}</td><td><b>{e(new)}</b></td><td>{e(note)}</td></tr>"
            for key, now, new, note in tool_rows(rx.tool)
        ]
        parts.append("</table>")
    if rx.next_config:
        parts.append(f"<p>Next config (<code>{e(next_config_name)}</code>):</p>")
        parts.append(f"<pre>{e(dump_yaml(rx.next_config))}</pre>")
        parts.append(f"<p>Train it: <code>{e(TRAIN_HINT.format(path=next_config_name))}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _png_data_uri(path: str | Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
