"""diagnosis.md, the self-contained diagnosis.html, and the --json shape."""

from __future__ import annotations

import base64
import json
import re

from paramdoctor.diagnosis import Evidence, Finding
from paramdoctor.report import diagnosis_html, diagnosis_json, diagnosis_markdown
from tests.report.diagnoses import check_diagnosis_shape, foreign_diagnosis, healthy_diagnosis, sick_diagnosis

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_markdown_has_verdict_findings_by_severity_skipped_and_prescription():
    md = diagnosis_markdown(sick_diagnosis(), curves_image="curves.png")
    assert md.startswith("# Diagnosis: overfit-run (0123456789abcdef0123456789abcdef)")
    assert "**2 findings (1 error, 1 warning)**" in md
    assert md.index("### 1. PD201") < md.index("### 2. PD401")
    assert "![curves](curves.png)" in md
    assert "- PD302 loss-spikes: needs step/grad\\_norm" in md
    assert "| `optimizer.weight_decay` | 0.0005 | **0.005** |" in md
    assert "```yaml\nseed: 42" in md and "paramdoctor train next.yaml" in md


def test_markdown_of_a_healthy_run():
    md = diagnosis_markdown(healthy_diagnosis())
    assert "**HEALTHY**" in md and "## Findings" not in md and "No changes." in md


def test_markdown_table_cells_cannot_be_broken_by_text():
    diag = sick_diagnosis()
    diag.prescription.changes[0].reason = "a | b\nc"
    md = diagnosis_markdown(diag)
    row = next(line for line in md.splitlines() if "optimizer.weight_decay" in line and line.startswith("|"))
    assert row.count(" | ") == 4 and "a \\| b c" in row


def test_html_is_self_contained_with_the_curves_embedded(tmp_path):
    png = tmp_path / "curves.png"
    png.write_bytes(PNG_BYTES)
    page = diagnosis_html(sick_diagnosis(), curves_png=png)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "<script" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", page)  # nothing fetched from elsewhere
    assert "http://" not in page and "https://" not in page
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(data) == PNG_BYTES
    assert page.index("PD201") < page.index("PD401")
    assert "needs step/grad_norm" in page and "paramdoctor train next.yaml" in page


def test_html_escapes_what_rules_and_runs_say():
    diag = sick_diagnosis()
    diag.run_name = "<script>alert(1)</script>"
    diag.findings[0].evidence.message = "loss <b>1.0</b> & rising"
    page = diagnosis_html(diag)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "loss &lt;b&gt;1.0&lt;/b&gt; &amp; rising" in page
    assert "<img" not in page  # no curves given


def test_json_shape_with_findings():
    data = json.loads(diagnosis_json(sick_diagnosis()))
    check_diagnosis_shape(data)
    assert data["status"] == "findings"
    assert [f["code"] for f in data["findings"]] == ["PD401", "PD201"]  # the engine's order, untouched
    assert data["prescription"]["patch"] == {"optimizer.weight_decay": 0.005, "model.dropout": 0.2}


def test_json_shape_when_healthy():
    data = json.loads(diagnosis_json(healthy_diagnosis()))
    check_diagnosis_shape(data)
    assert data["status"] == "healthy" and data["findings"] == [] and data["prescription"]["changes"] == []


def test_json_is_strict_with_non_finite_numbers_as_strings():
    diag = sick_diagnosis()
    diag.findings.append(
        Finding(
            "PD101", "loss-not-finite", "diverged", "critical", "Loss became NaN",
            Evidence("nan at step 3", {"loss": float("inf")}, onset=3), "", "",
        )
    )
    text = diagnosis_json(diag)
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"bare {c} in JSON")))
    data = json.loads(text)
    assert data["findings"][1]["evidence"]["values"]["nan_value"] == "nan"
    assert data["findings"][2]["evidence"]["values"]["loss"] == "inf"


def test_markdown_and_html_give_the_changes_in_the_tools_terms():
    diag = foreign_diagnosis("lightning")
    md = diagnosis_markdown(diag)
    assert "### The same changes in lightning terms" in md
    row = next(line for line in md.splitlines() if line.startswith("| `configure_optimizers: weight_decay`"))
    assert "| 0.0001 | **0.001** |" in row
    page = diagnosis_html(diag)
    assert "in lightning terms" in page and "<code>configure_optimizers: weight_decay</code>" in page
    assert "in lightning terms" not in diagnosis_markdown(sick_diagnosis())
    assert " terms" not in diagnosis_html(sick_diagnosis())


def test_json_carries_the_tool_prescription_and_null_for_paramdoctor_runs():
    data = json.loads(diagnosis_json(foreign_diagnosis("hf_trainer", own_values={"weight_decay": 0.01})))
    check_diagnosis_shape(data)
    tool = data["prescription"]["tool"]
    assert tool["name"] == "hf_trainer"
    by_key = {c["key"]: c for c in tool["changes"]}
    assert by_key["weight_decay"]["old"] == 0.01 and by_key["weight_decay"]["new"] == 0.1
    assert by_key["weight_decay"]["source_key"] == "optimizer.weight_decay"
    assert json.loads(diagnosis_json(sick_diagnosis()))["prescription"]["tool"] is None
