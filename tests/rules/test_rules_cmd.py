"""``paramdoctor rules``, tested through Typer's CliRunner on an app built with ``register``."""

import json
import subprocess
import sys

import pytest
import typer
import yaml
from typer.testing import CliRunner

from paramdoctor.cli import rules_cmd
from paramdoctor.cli.app import main
from paramdoctor.errors import RuleError

from tests.engine.test_schema import BASE


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    rules_cmd.register(app)
    return app


runner = CliRunner()


def test_lists_every_rule(app):
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0, result.output
    for text in ("PD101", "loss-not-finite", "diverged", "critical", "PD301", "val-loss-turns-up", "overfitting"):
        assert text in result.output
    assert "The loss became NaN or infinite" in result.output


def test_explains_one_rule_like_ruff(app):
    result = runner.invoke(app, ["rules", "val-loss-turns-up"])
    assert result.exit_code == 0, result.output
    out = result.output
    for heading in ("PD301 (val-loss-turns-up)", "What it detects", "Why it matters", "What to change", "Example", "Fires when", "Parameters", "Patch"):
        assert heading in out
    assert "min_rise = 0.1" in out and "rise >= min_rise" in out
    assert "optimizer.weight_decay: multiply 10" in out and "for at least 3 consecutive points" in out


def test_json_output(app):
    listing = json.loads(runner.invoke(app, ["rules", "--json"]).output)
    assert [r["code"] for r in listing] == sorted(r["code"] for r in listing)
    one = json.loads(runner.invoke(app, ["rules", "pd301", "--json"]).output)
    assert one["slug"] == "val-loss-turns-up" and one["stage"] == "regularisation" and one["for"] == {"param": "persistence", "points": None}
    assert one["doc"]["what"] and [p["key"] for p in one["patch"]][:2] == ["data.subset", "optimizer.weight_decay"]


def test_user_rules_directory(app, tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(BASE))
    result = runner.invoke(app, ["rules", "--rules", str(tmp_path)])
    assert result.exit_code == 0 and "PD901" in result.output and "test-val-rises" in result.output
    assert "defined in" in runner.invoke(app, ["rules", "PD901", "--rules", str(tmp_path)]).output


def test_errors_are_paramdoctor_errors(app, tmp_path):
    result = runner.invoke(app, ["rules", "PD999"])
    assert isinstance(result.exception, RuleError) and "unknown rule 'PD999'" in str(result.exception)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**BASE, "severty": "error"}))
    result = runner.invoke(app, ["rules", "--rules", str(tmp_path)])
    assert isinstance(result.exception, RuleError) and "severty" in str(result.exception)


def test_the_real_entry_point_exits_2_with_one_line(capsys):
    assert main(["rules", "PD999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown rule 'PD999'") and err.count("\n") == 1


def test_rules_command_imports_nothing_heavy():
    code = (
        "import sys; from paramdoctor.cli.app import main; main(['rules']);"
        "heavy = [m for m in ('torch', 'mlflow', 'matplotlib') if m in sys.modules]; print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
