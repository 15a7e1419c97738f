"""The closing summary of `paramdoctor train`: how to browse the run, and what waits in the spool."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from paramdoctor.cli.train_display import print_summary
from paramdoctor.config import load_config


@pytest.fixture(autouse=True)
def _no_ui_address_from_the_environment(monkeypatch):
    monkeypatch.delenv("PARAMDOCTOR_UI_URL", raising=False)


def result(**overrides):
    fields = dict(
        run_id="a" * 32, run_name="cli-run", experiment="paramdoctor", status="FINISHED", stop_reason="max_epochs",
        epochs_run=1, best_epoch=1, best_value=0.5, monitor="val/acc", duration_s=1.0, failure=None,
        experiment_id="7", tracking_uri=None, spooled=0,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def summary(res, monkeypatch, env_uri: str | None = None) -> str:
    if env_uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    console = Console(record=True, width=200)
    print_summary(console, load_config(None, []), res, wall_s=2.0)
    return console.export_text()


@pytest.mark.parametrize("uri", ["http://tracking.example:5000", "https://mlflow.example.org/"])
def test_a_run_on_a_tracking_server_is_browsed_at_its_page(monkeypatch, uri):
    out = summary(result(tracking_uri=uri), monkeypatch)
    assert f"browse it:    {uri.rstrip('/')}/#/experiments/7/runs/{'a' * 32}" in out
    assert "mlflow ui" not in out  # `mlflow ui --backend-store-uri http://...` crashes MLflow


def test_the_server_from_the_environment_when_the_result_does_not_say(monkeypatch):
    out = summary(result(tracking_uri=None), monkeypatch, env_uri="http://tracking.example:5000")
    assert f"http://tracking.example:5000/#/experiments/7/runs/{'a' * 32}" in out and "mlflow ui" not in out


def test_a_local_store_is_browsed_with_paramdoctor_ui(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    page = f"http://127.0.0.1:5000/#/experiments/7/runs/{'a' * 32}?workflowType=machine_learning"
    out = summary(result(tracking_uri=uri), monkeypatch)
    assert f"browse it:    MLFLOW_TRACKING_URI={uri} paramdoctor ui  then open {page}" in out
    assert f"browse it:    paramdoctor ui  then open {page}" in summary(result(), monkeypatch)
    same_store = summary(result(tracking_uri=uri), monkeypatch, env_uri=uri)
    assert f"browse it:    paramdoctor ui  then open {page}" in same_store


def test_a_known_ui_gets_the_runs_page_in_the_model_training_view(monkeypatch, tmp_path):
    monkeypatch.setenv("PARAMDOCTOR_UI_URL", "http://127.0.0.1:5055/")
    out = summary(result(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"), monkeypatch)
    assert f"browse it:    http://127.0.0.1:5055/#/experiments/7/runs/{'a' * 32}?workflowType=machine_learning\n" in out
    # the UI's address wins over the tracking server's (a proxy in front of the server, say)
    out = summary(result(tracking_uri="http://mlflow.internal:5000"), monkeypatch)
    assert "http://127.0.0.1:5055/#/experiments/7/runs/" in out and "mlflow.internal" not in out


def test_a_bad_ui_address_is_named_and_the_summary_still_prints(monkeypatch):
    monkeypatch.setenv("PARAMDOCTOR_UI_URL", "localhost:5000")
    out = summary(result(), monkeypatch)
    assert "PARAMDOCTOR_UI_URL='localhost:5000' is not an http(s) address" in out and "FINISHED" in out


def test_spooled_metrics_are_shown_with_the_command_that_sends_them(monkeypatch):
    out = summary(result(spooled=51, tracking_uri="http://tracking.example:5000"), monkeypatch)
    assert f"51 metrics kept on local disk (server away): paramdoctor sync {'a' * 32}" in out
    assert "spooled" not in summary(result(), monkeypatch)
