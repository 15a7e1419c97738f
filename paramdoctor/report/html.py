"""The diagnosis as one self-contained HTML page (``diagnosis.html``) for the MLflow UI's artifact viewer.

MLflow shows an HTML artifact in a sandboxed iframe made from a blob of the
file alone: it cannot load the run's other files. So the page carries
everything: inline CSS, the curves PNG as a base64 data URI, no scripts, no
external URLs (fonts included). It renders the same offline, in that iframe,
or attached to a bug report. Checked in a real browser by
``tests/e2e/test_mlflow_ui_browser.py``.
"""

from __future__ import annotations

import base64
import re
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
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1rem 1.2rem;color:#1f2328;
 background:#fff;max-width:72rem;line-height:1.45;font-size:14px}
h1{font-size:1.25rem;margin:0 0 .15rem} h2{font-size:1.05rem;margin:1.4rem 0 .5rem;border-bottom:1px solid #d8dee4;
 padding-bottom:.2rem} h3{font-size:.95rem;margin:1rem 0 .3rem}
.run{color:#59636e;font-size:.85rem;margin-bottom:.6rem;word-break:break-all}
.verdict{font-weight:700;font-size:1.05rem;padding:.3rem .7rem;border-radius:6px;display:inline-block;margin:.2rem 0}
.healthy{background:#dafbe1;color:#116329} .findings{background:#ffebe9;color:#a40e26}
.no_validation,.interrupted{background:#f3e8fd;color:#681da8}
.notes p{margin:.3rem 0}
.finding{border-left:5px solid #8c959f;padding:.45rem .9rem;margin:.7rem 0;background:#f6f8fa;border-radius:0 6px 6px 0}
.finding.critical{border-color:#82071e} .finding.error{border-color:#cf222e} .finding.warning{border-color:#bf8700}
.finding.info{border-color:#0969da}
.finding .head{font-size:.85rem;color:#59636e} .finding .head b{color:#1f2328}
.finding .title{font-weight:700;font-size:1rem;margin:.15rem 0 .3rem}
.finding p{margin:.3rem 0}
.sev{font-size:.72rem;text-transform:uppercase;font-weight:700;padding:.05rem .35rem;border-radius:4px;color:#fff;
 background:#8c959f} .sev.critical{background:#82071e} .sev.error{background:#cf222e} .sev.warning{background:#9a6700}
.sev.info{background:#0969da}
.dim{color:#59636e}
table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #d8dee4;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.25rem .8rem;margin:.4rem 0}
.summary div{border-bottom:1px solid #eaeef2;padding:.1rem 0} .summary span{color:#59636e;margin-right:.4rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#f6f8fa;padding:.6rem .8rem;overflow:auto;border-radius:6px;margin:.3rem 0}
pre.cmd{background:#1f2328;color:#f6f8fa}
img{max-width:100%;height:auto;border:1px solid #d8dee4;border-radius:6px}
summary{cursor:pointer;color:#0969da}
"""

_MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


def diagnosis_html(
    diag: Diagnosis, *, curves_png: str | Path | None = None, next_config_name: str = DEFAULT_NEXT_CONFIG
) -> str:
    """The whole page as a string; ``curves_png`` (a PNG file) is embedded when given and present.

    Read top to bottom in MLflow's artifact viewer (a narrow iframe): the
    verdict, the findings with their evidence, the prescription and the
    commands that train it, the annotated curves, then the run's numbers and
    the rules that could not judge.
    """
    e = escape
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>paramdoctor: {e(run_label(diag))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>paramdoctor diagnosis</h1>",
        f'<div class="run">{e(run_label(diag))}</div>',
        f'<div class="verdict {e(diag.status)}">{e(verdict(diag))}</div>',
    ]
    notes: list[str] = []
    if diag.source != "paramdoctor":
        notes.append(f'<p class="dim">curves from {e(diag.source)}</p>')
    if diag.interrupted:
        notes.append(f"<p><b>Interrupted:</b> {e(diag.interrupted)}</p>")
    if diag.missing and not diag.findings and not diag.interrupted:
        notes.append(f"<p><b>Missing:</b> {e(diag.missing)}</p>")
    if diag.eval_sets:
        notes.append(f'<p class="dim">evaluation sets judged: {e(", ".join(diag.eval_sets))}</p>')
    if notes:
        parts.append('<div class="notes">' + "".join(notes) + "</div>")
    parts += _findings(diag)
    parts += _prescription(diag, next_config_name)
    image = _png_data_uri(curves_png)
    if image:
        parts.append(
            "<h2>Curves</h2>"
            f'<img alt="training curves, the best epoch and the onset of each finding marked" src="{image}">'
        )
    items = summary_items(diag)
    if items:
        parts.append("<h2>The run</h2>")
        parts.append(
            '<div class="summary">'
            + "".join(f"<div><span>{e(k)}</span>{e(v)}</div>" for k, v in items)
            + "</div>"
        )
    if diag.skipped:
        parts.append("<h2>Could not judge</h2><ul>")
        parts += [f"<li><code>{e(s.code)}</code> {e(s.slug)}: {e(s.reason)}</li>" for s in diag.skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _findings(diag: Diagnosis) -> list[str]:
    e = escape
    if not diag.findings:
        return []
    parts = ["<h2>Findings</h2>"]
    for number, f in enumerate(ordered_findings(diag.findings), start=1):
        onset = onset_text(f)
        since = f" (from {e(onset)})" if onset and onset not in f.evidence.message else ""
        parts.append(
            f'<div class="finding {e(f.severity)}">'
            f'<div class="head"><b>{number}. {e(f.code)}</b> {e(f.slug)} '
            f'<span class="sev {e(f.severity)}">{e(f.severity)}</span> {e(f.category)}'
            + (f" <b>{e(finding_heading(f))}</b>" if f.eval_set else "")
            + "</div>"
            f'<div class="title">{e(f.title)}</div>'
            f"<p><b>Evidence:</b> {e(f.evidence.message)}{since}</p>"
            + (f"<p><b>Why it matters:</b> {e(f.why)}</p>" if f.why else "")
            + (f"<p><b>What to change:</b> {e(f.fix)}</p>" if f.fix else "")
            + "</div>"
        )
    return parts


def _prescription(diag: Diagnosis, next_config_name: str) -> list[str]:
    """The changes, in paramdoctor's keys and the source tool's, then how to train the next config."""
    e = escape
    rx = diag.prescription
    parts = ["<h2>Prescription</h2>"]
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
    if not rx.next_config:
        return parts
    parts.append("<h3>Train the next config</h3>")
    parts.append(
        f"<p>The whole next config is <code>{e(next_config_name)}</code>"
        + (" (beside this page in the run's artifacts)" if next_config_name != DEFAULT_NEXT_CONFIG else "")
        + ". With it in the working directory:</p>"
    )
    parts.append(f'<pre class="cmd">{e(TRAIN_HINT.format(path=next_config_name))}</pre>')
    if diag.run_id and _MLFLOW_RUN_ID.fullmatch(diag.run_id):
        parts.append("<p>or, from the run in MLflow:</p>")
        parts.append(
            f'<pre class="cmd">paramdoctor diagnose {e(diag.run_id)} --write {e(DEFAULT_NEXT_CONFIG)} --no-log\n'
            f"{e(TRAIN_HINT.format(path=DEFAULT_NEXT_CONFIG))}</pre>"
        )
    lines = dump_yaml(rx.next_config)
    parts.append(
        f"<details><summary>the whole next config ({len(lines.splitlines())} lines)</summary>"
        f"<pre>{e(lines)}</pre></details>"
    )
    return parts


def _png_data_uri(path: str | Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
