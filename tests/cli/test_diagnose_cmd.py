"""`paramdoctor diagnose`, end to end: real MLflow store, real engine and rules, CliRunner and app.main."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from paramdoctor import keys
from paramdoctor.cli import app as app_module
from paramdoctor.cli.diagnose_cmd import register
from paramdoctor.config import load_config
from paramdoctor.sources import record_from_mlflow
from paramdoctor.writeback import ARTIFACT_DIR
from tests.report.diagnoses import check_diagnosis_shape
from tests.sources.mlflow_runs import healthy_curves, make_run, new_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-store")
    uri, client = new_store(folder)
    ids = {"healthy": make_run(client, run_name="steady", curves=healthy_curves(), tmp_dir=folder)}
    ids["overfit"] = make_run(client, run_name="overfit-run", tmp_dir=folder)  # the newest: `latest`
    return uri, client, ids, folder


@pytest.fixture
def env(store, tmp_path, monkeypatch):
    uri, client, ids, folder = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return client, ids, folder


@pytest.fixture
def cli():
    """An app holding only the diagnose command, as the CLI's registry builds it."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """Test app."""

    register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["diagnose", *args], standalone_mode=False)

    return invoke


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = app_module.main(["diagnose", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_id_reports_findings_and_writes_them_back(env, cli):
    client, ids, folder = env
    result = cli(ids["overfit"])
    assert result.exception is None, result.output
    assert result.return_value == 1  # an overfitting run has findings
    assert "overfit-run" in result.stdout and "PD301" in result.stdout and "val-loss-turns-up" in result.stdout
    assert "paramdoctor train next.yaml" in result.stdout
    run = client.get_run(ids["overfit"])
    assert run.data.tags[keys.TAG_STATUS] == "findings"
    codes = run.data.tags[keys.TAG_FINDINGS].split(",")
    assert "PD301" in codes
    local = client.download_artifacts(ids["overfit"], f"{ARTIFACT_DIR}/diagnosis.json", str(folder / "dl"))
    stored = json.loads(Path(local).read_text())
    assert [f["code"] for f in stored["findings"]] == codes
    assert run.info.status == "FINISHED"


def test_json_prints_exactly_one_object_with_the_documented_shape(env, capsys):
    client, ids, _ = env
    code, out, err = run_main(capsys, "overfit-run", "--json", "--no-log")
    data = json.loads(out)  # nothing else on stdout
    check_diagnosis_shape(data)
    assert data["run_id"] == ids["overfit"] and data["status"] == "findings" and code == 1
    assert any(f["category"] == "overfitting" for f in data["findings"])


def test_latest_and_exit_code_match_the_status(env, capsys):
    _, ids, _ = env
    code, out, _ = run_main(capsys, "latest", "--json", "--no-log")
    data = json.loads(out)
    assert data["run_id"] == ids["overfit"]
    code, out, _ = run_main(capsys, "steady", "--json", "--no-log")
    data = json.loads(out)
    assert data["run_name"] == "steady"
    assert code == (1 if data["findings"] else 0)


def test_exported_json_needs_no_store_and_writes_nothing_back(env, tmp_path, monkeypatch, capsys):
    client, ids, _ = env
    path = record_from_mlflow(ids["overfit"], client).save(tmp_path / "export.json")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent.db")
    code, out, err = run_main(capsys, str(path), "--json")
    assert code == 1 and json.loads(out)["run_id"] == ids["overfit"]
    assert not (tmp_path / "absent.db").exists()


def test_unknown_run_exits_2_with_one_line(env, capsys):
    code, out, err = run_main(capsys, "nope")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: run 'nope' not found in experiment 'paramdoctor' at sqlite:")
    assert "paramdoctor diagnose latest" in err


def test_write_gives_a_config_that_train_accepts(env, tmp_path, capsys):
    code, out, _ = run_main(capsys, "overfit-run", "--no-log", "--write", str(tmp_path / "cfg" / "next.yaml"))
    assert code == 1
    config = load_config(tmp_path / "cfg" / "next.yaml")  # exactly what `paramdoctor train next.yaml` does
    assert config.optimizer.weight_decay > 5e-4  # the prescription for overfitting was applied
    assert f"paramdoctor train {tmp_path / 'cfg' / 'next.yaml'}" in out.replace("\n", "")


def test_no_log_leaves_the_run_untouched(env, capsys):
    client, _, folder = env
    run_id = make_run(client, run_name="untouched", tmp_dir=folder)
    before = client.get_run(run_id)
    code, _, _ = run_main(capsys, run_id, "--no-log")
    after = client.get_run(run_id)
    assert code == 1
    assert after.data.tags == before.data.tags
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]


def test_set_reaches_the_rules(env, capsys):
    _, _, _ = env
    code, out, _ = run_main(capsys, "overfit-run", "--json", "--no-log", "--set", "PD301.min_rise=100")
    assert "PD301" not in [f["code"] for f in json.loads(out)["findings"]]
    code, _, err = run_main(capsys, "overfit-run", "--no-log", "--set", "PD301.no_such_param=1")
    assert code == 2 and err.count("\n") == 1


def test_whole_experiment_summary_and_exit_code(env, capsys):
    client, ids, _ = env
    code, out, _ = run_main(capsys, "--experiment", "paramdoctor", "--no-log")
    assert code == 1
    assert "overfit-run" in out and "steady" in out and "PD301" in out
    code, out, _ = run_main(capsys, "--experiment", "paramdoctor", "--no-log", "--json")
    data = json.loads(out)
    assert data["experiment"] == "paramdoctor" and data["status"] == "findings" and code == 1
    for run in data["runs"]:
        check_diagnosis_shape(run)
    assert {r["run_id"] for r in data["runs"]} >= set(ids.values())


def test_experiment_mode_writes_back_every_run(store, tmp_path, monkeypatch, capsys):
    _, client, _, folder = store
    exp_folder = tmp_path / "exp"
    uri, exp_client = new_store(exp_folder)
    run_ids = [make_run(exp_client, experiment="sweep", run_name=f"t{i}", tmp_dir=exp_folder) for i in range(2)]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(capsys, "--experiment", "sweep")
    assert code == 1
    for run_id in run_ids:
        assert exp_client.get_run(run_id).data.tags[keys.TAG_STATUS] == "findings"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "no run given"),
        (("--experiment", "paramdoctor", "--write", "x.yaml"), "--write and --run-index need one RUN"),
        (("latest", "--map", "val/loss"), "--map 'val/loss': expected KEY=COLUMN"),
        (("latest", "--experiment", "missing"), "experiment 'missing' not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(env, capsys, args, needle):
    code, out, err = run_main(capsys, *args)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_as_a_process_exit_code_comes_through_and_torch_is_not_imported(env, tmp_path):
    """Reading and diagnosing a run must start fast: no torch. The process exits with the diagnosis' code."""
    client, ids, _ = env
    path = record_from_mlflow(ids["overfit"], client).save(tmp_path / "export.json")
    code = (
        "import sys; from paramdoctor.cli.app import main; rc = main(['diagnose', sys.argv[1], '--json']); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "no torch", done.stderr
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "findings"


def test_an_unreadable_store_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/broken.db")
    code, out, err = run_main(capsys, "latest")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: the MLflow store {tmp_path}/broken.db is not a readable SQLite database")


# --- runs from other tools: the prescription in their own terms ----------------------

FIXTURES = REPO / "tests" / "importers" / "fixtures"
HF_OVERFIT = FIXTURES / "hf_llm_overfit" / "checkpoint-240" / "trainer_state.json"
LIGHTNING_OVERFIT = FIXTURES / "lightning_overfit" / "lightning_logs" / "version_0" / "metrics.csv"


@pytest.fixture
def no_store(tmp_path, monkeypatch):
    """Other tools' logs need no MLflow store: point at one that does not exist, work in tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tool_table(out: str, tool: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if f"prescription in {tool} terms" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    return "\n".join(lines[start : end + 1])


def _settings_column(table: str) -> str:
    """The first column's text, wrapped lines joined: the tool's setting names."""
    return "".join(line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│"))


def test_hf_trainer_log_gets_its_prescription_in_training_arguments_names(no_store, capsys):
    code, out, _ = run_main(capsys, str(HF_OVERFIT))
    assert code == 1
    table = _tool_table(out, "hf_trainer")
    assert "│ weight_decay " in table  # TrainingArguments' name, not optimizer.weight_decay
    assert "weight_decay" in _settings_column(table)
    code, out, _ = run_main(capsys, str(HF_OVERFIT), "--json")
    data = json.loads(out)
    check_diagnosis_shape(data)
    assert data["prescription"]["tool"]["name"] == "hf_trainer"
    assert "weight_decay" in {c["key"] for c in data["prescription"]["tool"]["changes"]}
    assert not (no_store / "absent.db").exists()


def test_lightning_log_gets_lightning_names(no_store, capsys):
    code, out, _ = run_main(capsys, str(LIGHTNING_OVERFIT))
    table = _tool_table(out, "lightning")
    assert "configure_optimizers:" in table and "configure_optimizers:weight_decay" in _settings_column(table)
    assert "0.0001" in table  # the run's own weight decay, from hparams.yaml, is what gets scaled


def test_paramdoctor_runs_show_no_tool_table(env, capsys):
    code, out, _ = run_main(capsys, "overfit-run", "--no-log")
    assert code == 1 and "prescription: the next config" in out and " terms" not in out
    _, out, _ = run_main(capsys, "overfit-run", "--no-log", "--json")
    assert json.loads(out)["prescription"]["tool"] is None


def test_write_for_a_foreign_run_also_writes_the_tools_settings(no_store, capsys):
    target = no_store / "cfg" / "next.yaml"
    code, out, _ = run_main(capsys, str(FIXTURES / "llamafactory_out"), "--write", str(target))
    assert code == 1
    load_config(target)  # paramdoctor's own config, as for any run
    patch = target.with_name("next.llamafactory.yaml")
    settings = yaml.safe_load(patch.read_text())
    assert isinstance(settings, dict) and settings.get("lora_dropout", 0) > 0  # a flat map of LLaMA-Factory keys
    assert f"llamafactory settings written to {patch}" in out.replace("\n", "")
    run_main(capsys, str(HF_OVERFIT), "--write", str(target))
    assert "weight_decay" in target.with_name("next.hf_trainer.yaml").read_text()


def test_imported_runs_carry_the_tool_terms_into_the_mlflow_reports(tmp_path, monkeypatch, capsys):
    from paramdoctor.importers.to_mlflow import log_record
    from paramdoctor.sources import resolve

    folder = tmp_path / "imported"
    uri, client = new_store(folder)
    client.create_experiment("imports", artifact_location=(folder / "artifacts").as_uri())
    run_id = log_record(resolve(str(LIGHTNING_OVERFIT)).record, experiment="imports", client=client)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(capsys, run_id)
    assert code == 1
    md = Path(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/diagnosis.md", str(tmp_path / "dl"))).read_text()
    assert "in lightning terms" in md and "| `configure_optimizers: weight_decay` |" in md
    stored = json.loads(Path(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/diagnosis.json", str(tmp_path / "dl"))).read_text())
    assert stored["prescription"]["tool"]["name"] == "lightning"


def test_help_says_what_write_gives_for_other_tools(cli):
    result = cli("--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "NEXT.<tool>.yaml" in text and "next.hf_trainer.yaml" in text
