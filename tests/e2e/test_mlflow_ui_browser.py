"""The diagnosis where users browse it: MLflow's own UI, in a real headless Chromium.

One test, end to end, against a real ``mlflow server`` started here on a free
loopback port (a SQLite store and an artifact folder under ``tmp_path``):

1. ``paramdoctor train`` (the CLI, in-process) trains a tiny real run on the
   digits data with ``MLFLOW_TRACKING_URI`` pointing at the server, and prints
   the URL of the run's page; ``paramdoctor diagnose RUN --json`` judges it
   and writes the verdict back (tags and ``paramdoctor/`` artifacts). A
   second, undiagnosed run sits beside it so that filtering has something to
   leave out.
2. The experiment's page, opened at the address paramdoctor prints, lands in
   MLflow's model-training view (the runs table), not the GenAI one
   ("Evaluations", "Evaluation runs"), and the experiment carries the
   ``mlflow.experimentKind`` tag.
3. ``paramdoctor.status`` and ``paramdoctor.findings`` are added as columns
   from the Columns menu and show the run's values; the search box's
   ``tags.paramdoctor.status = '<status>'`` keeps the diagnosed run and drops
   the other.
4. The printed run URL opens the run's page; in its Artifacts tab,
   ``paramdoctor/diagnosis.html`` renders inside MLflow's sandboxed iframe:
   the verdict, every finding's title and evidence, a prescribed change (key
   and new value), the command that trains it, and the curves image actually
   decoded; the iframe fetches nothing (no request leaves it). ``curves.png``
   and ``diagnosis.md`` render in the same viewer, and so does the picture
   ``paramdoctor compare`` logs to the run (``compare.png``; ``ablate``'s
   ``ablation.png`` is logged the same way).

A screenshot of the diagnosis in the artifact viewer is saved under
``tmp_path``; with ``PARAMDOCTOR_SCREENSHOTS=1`` it also replaces
``docs/mlflow_ui_diagnosis.png`` (the README's picture), so an ordinary test
run leaves the repository untouched.

The browser is Debian's ``chromium`` driven by Playwright through
``executable_path``: nothing downloads a browser. Without either the test is
skipped with the command that installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "mlflow_ui_diagnosis.png"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
UI_TIMEOUT_MS = 60_000  # per action; the suite runs beside it on 2 cores
SERVER_START_S = 150  # `mlflow server` imports MLflow twice (CLI, then uvicorn): a minute on a loaded 2-core box

pytestmark = pytest.mark.slow


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium for the MLflow UI browser test: install it with `apt-get install chromium` (Debian)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` in its own process group, stopped with everything it started."""

    def __init__(self, root: Path, template_db: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        db = root / "mlflow.db"
        shutil.copyfile(template_db, db)  # already migrated: the server does not spend seconds on DDL
        self.log = root / "server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner (7 processes)
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "mlflow", "server",
                    "--backend-store-uri", f"sqlite:///{db}",
                    "--artifacts-destination", str(root / "artifacts"),
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                ],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        pytest.fail(f"mlflow server did not answer within {SERVER_START_S} s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def browser_path() -> str:
    path = _chromium()
    pytest.importorskip(
        "playwright.sync_api",
        reason="no Playwright for the MLflow UI browser test: install it with `pip install playwright` "
        "(never `playwright install`: the test drives the system Chromium)",
    )
    return path


@pytest.fixture
def server(browser_path, tmp_path_factory, migrated_mlflow_db):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), migrated_mlflow_db)
    yield srv
    srv.stop()


def test_the_diagnosis_is_readable_searchable_and_rendered_in_mlflows_ui(
    server, browser_path, tmp_path, monkeypatch, capsys
):
    t0 = time.perf_counter()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    import paramdoctor.training  # noqa: F401 - torch is imported while the server starts
    from paramdoctor.cli import ui_cmd
    from paramdoctor.cli.app import main
    from paramdoctor.tracking.run import MODEL_TRAINING_KIND, TAG_EXPERIMENT_KIND

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.delenv(ui_cmd.UI_URL_ENV, raising=False)
    server.wait_until_serving()
    t_server = time.perf_counter() - t0

    # --- 1. a tiny real run, trained and diagnosed through the CLI ------------------------------------
    code = main([
        "train", "-q", "data.subset=200", "trainer.max_epochs=3", "early_stopping.enabled=false",
        "experiment.run_name=digits-e2e",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    link = re.search(r"browse it:\s+(\S+)", out)
    assert link, out
    run_page = link.group(1)
    match = re.fullmatch(
        re.escape(server.url) + r"/#/experiments/(\w+)/runs/([0-9a-f]{32})\?workflowType=machine_learning", run_page
    )
    assert match, run_page
    experiment_id, run_id = match.groups()

    code = main(["diagnose", run_id, "--json"])
    diagnosis = json.loads(capsys.readouterr().out)
    assert code == {"healthy": 0, "findings": 1}.get(diagnosis["status"], code)
    status, findings = diagnosis["status"], diagnosis["findings"]
    changes = diagnosis["prescription"]["changes"]
    assert status == "findings" and findings and changes, diagnosis  # 3 epochs of 200 images: still improving

    client = MlflowClient(server.url)
    tags = client.get_run(run_id).data.tags
    assert tags["paramdoctor.status"] == status
    assert tags["paramdoctor.findings"] == ",".join(f["code"] for f in findings)
    assert client.get_experiment(experiment_id).tags.get(TAG_EXPERIMENT_KIND) == MODEL_TRAINING_KIND
    other = client.create_run(experiment_id, run_name="not-diagnosed").info.run_id
    client.set_terminated(other)
    # a compare picture logged to the run, as `compare` does for the first MLflow run it is given
    assert main(["compare", run_id, str(ROOT / "sample_runs" / "healthy_seed1"), "--json"]) == 0
    capsys.readouterr()
    t_run = time.perf_counter() - t0

    with sync_playwright() as pw:
        args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)

            # --- 2. the experiment opens in the model-training view --------------------------------------
            page.goto(ui_cmd.experiment_url(server.url, experiment_id))
            expect(page.get_by_text("digits-e2e", exact=True)).to_be_visible()
            assert re.search(rf"#/experiments/{experiment_id}/runs\?", page.url), page.url
            assert "workflowType=machine_learning" in page.url
            expect(page.get_by_text("2 matching runs")).to_be_visible()
            for genai in ("Evaluation runs", "Evaluations"):
                expect(page.get_by_text(genai, exact=True)).to_have_count(0)
            _close_assistant(page)

            # --- 3. the verdict as columns, and as a search ----------------------------------------------
            page.get_by_role("button", name="Columns").click()
            search_columns = page.get_by_placeholder("Search columns")
            for key in ("paramdoctor.status", "paramdoctor.findings"):
                search_columns.fill(key)
                node = page.locator(".du-bois-light-tree-treenode", has=page.get_by_text(key, exact=True))
                node.locator(".du-bois-light-tree-checkbox").click()
            page.keyboard.press("Escape")
            for key in ("paramdoctor.status", "paramdoctor.findings"):
                expect(page.get_by_role("columnheader", name=key).first).to_be_attached()
            # the grid draws a row in parts (pinned name column, scrolling columns): one row-index joins them
            index = page.locator("[role=row][row-index]").filter(has_text="digits-e2e").first.get_attribute("row-index")
            row = page.locator(f"[role=row][row-index='{index}']")
            for value in (status, tags["paramdoctor.findings"]):
                cell = row.get_by_role("gridcell", name=value, exact=True)
                cell.scroll_into_view_if_needed()
                expect(cell).to_be_visible()

            search = page.get_by_placeholder(re.compile(r"metrics\.rmse"))
            search.fill(f"tags.paramdoctor.status = '{status}'")
            search.press("Enter")
            expect(page.get_by_text("1 matching run", exact=True)).to_be_visible()
            expect(page.get_by_text("digits-e2e", exact=True)).to_be_visible()
            expect(page.get_by_text("not-diagnosed", exact=True)).to_have_count(0)

            # --- 4. the run's page, and diagnosis.html in the artifact viewer ----------------------------
            page.goto(run_page)
            page.get_by_role("tab", name="Artifacts").click()
            _artifact(page, "paramdoctor").click()
            from_iframe: list[str] = []
            page.on("request", lambda r: from_iframe.append(r.url) if r.frame.url.startswith("blob:") else None)
            _artifact(page, "diagnosis.html").click()
            doc = page.frame_locator("iframe[src^='blob:']")
            expect(doc.get_by_text("paramdoctor diagnosis", exact=True)).to_be_visible()
            expect(doc.locator(".verdict")).to_have_text(re.compile(r"\d+ findings? \("))
            for finding in findings:
                expect(doc.get_by_text(finding["title"], exact=True)).to_be_visible()
                expect(doc.get_by_text(finding["evidence"]["message"], exact=False).first).to_be_attached()
            change = changes[0]
            change_row = doc.locator("tr").filter(has=doc.get_by_text(change["key"], exact=True))
            expect(change_row).to_be_visible()
            expect(change_row).to_contain_text(_fmt(change["new"]))
            expect(doc.get_by_text("paramdoctor train next_config.yaml")).to_be_attached()
            curves = doc.locator("img[src^='data:image/png;base64,']")
            expect(curves).to_be_attached()
            curves.scroll_into_view_if_needed()
            assert curves.evaluate("img => img.complete && img.naturalWidth > 0"), "the curves did not decode"
            doc.locator("body").evaluate("b => window.scrollTo(0, 0)")
            assert not [u for u in from_iframe if not u.startswith(("data:", "blob:"))], from_iframe
            shot = tmp_path / "mlflow_ui_diagnosis.png"
            page.screenshot(path=str(shot))
            if os.environ.get("PARAMDOCTOR_SCREENSHOTS") == "1":
                shutil.copyfile(shot, SCREENSHOT)

            # curves.png, compare's picture and diagnosis.md in the same viewer
            for picture_name in ("curves.png", "compare.png"):
                _artifact(page, picture_name).click()
                expect(page.get_by_text(f"paramdoctor/{picture_name}", exact=True)).to_be_visible()
                picture = page.locator("img[src^='blob:'], img[src*='get-artifact']").first
                expect(picture).to_be_visible()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
            _artifact(page, "diagnosis.md").click()
            expect(page.get_by_text(findings[0]["title"]).first).to_be_visible()
        finally:
            browser.close()
    timing = (
        f"server up {t_server:.1f} s, run trained and diagnosed at {t_run:.1f} s, "
        f"browser checks done at {time.perf_counter() - t0:.1f} s"
    )
    print(timing)


def _close_assistant(page) -> None:
    """MLflow 3's assistant panel takes a third of the page; close it when it is open (a readable screenshot)."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def _artifact(page, name: str):
    return page.locator(f'[data-testid="artifact-tree-node"][artifact-name="{name}"]')


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return f"{value:g}" if isinstance(value, float) else str(value)
