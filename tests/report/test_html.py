"""diagnosis.html as MLflow's artifact viewer shows it: what comes first, how to train the next config, nothing fetched.

The page in a real browser inside MLflow's UI: tests/e2e/test_mlflow_ui_browser.py.
"""

from __future__ import annotations

import re

from paramdoctor.report import diagnosis_html
from tests.report.diagnoses import foreign_diagnosis, healthy_diagnosis, sick_diagnosis

RUN_ID = "0123456789abcdef0123456789abcdef"


def test_the_verdict_and_findings_come_before_the_numbers(tmp_path):
    png = tmp_path / "curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = diagnosis_html(sick_diagnosis(), curves_png=png, next_config_name="next_config.yaml")
    marks = ['class="verdict findings"', "<h2>Findings</h2>", "<h2>Prescription</h2>", "<h2>Curves</h2>",
             "<h2>The run</h2>", "<h2>Could not judge</h2>"]
    positions = [page.index(mark) for mark in marks]
    assert positions == sorted(positions)
    assert page.index("Validation loss turns up") < page.index("Training went on long")  # error before warning


def test_the_next_config_is_trained_from_the_artifact_or_from_the_run():
    page = diagnosis_html(sick_diagnosis(), next_config_name="next_config.yaml")
    assert "<code>next_config.yaml</code> (beside this page in the run's artifacts)" in page
    assert '<pre class="cmd">paramdoctor train next_config.yaml</pre>' in page
    assert f"paramdoctor diagnose {RUN_ID} --write next.yaml --no-log\nparamdoctor train next.yaml</pre>" in page
    whole = re.search(r"<details><summary>the whole next config \((\d+) lines\)</summary><pre>(.*?)</pre></details>",
                      page, re.S)
    assert whole and int(whole.group(1)) == len(whole.group(2).splitlines()) > 20
    assert "weight_decay: 0.005" in whole.group(2)


def test_a_log_from_another_tool_gets_no_mlflow_command():
    page = diagnosis_html(foreign_diagnosis("lightning"))
    assert "paramdoctor diagnose" not in page  # no MLflow run to write it from
    assert "in lightning terms" in page


def test_a_healthy_run_says_so_and_prescribes_nothing():
    page = diagnosis_html(healthy_diagnosis())
    assert '<div class="verdict healthy">HEALTHY</div>' in page
    assert "<h2>Findings</h2>" not in page and "<p>No changes.</p>" in page


def test_the_run_summary_is_compact_and_escaped():
    diag = sick_diagnosis()
    diag.summary["stop_reason"] = "<max_epochs>"
    page = diagnosis_html(diag)
    assert '<div class="summary">' in page and "<div><span>stop reason</span>&lt;max_epochs&gt;</div>" in page


def test_nothing_is_fetched_from_anywhere():
    page = diagnosis_html(sick_diagnosis())
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    assert "<script" not in page and "<link" not in page and "<iframe" not in page
