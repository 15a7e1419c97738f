"""``paramdoctor rules test``: through Typer's CliRunner on an app built with ``register``, and the real entry point."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from paramdoctor.cli import rules_cmd
from paramdoctor.cli.app import main
from paramdoctor.cli.rules_test import render_report_card
from paramdoctor.engine import load_rules
from paramdoctor.engine.report_card import FalseAlarm, Miss, ReportCard, RuleScore, SampleResult
from paramdoctor.errors import InputError
from tests.engine.test_report_card import write_corpus, write_sample
from tests.engine.test_schema import BASE
from tests.rules import synthetic

runner = CliRunner()


@pytest.fixture(scope="module")
def records():
    return {"healthy": synthetic.healthy(), "overfit": synthetic.sick("PD301"), "plateau": synthetic.sick("PD201")}


@pytest.fixture(scope="module")
def app():
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """Test app."""

    rules_cmd.register(app)
    return app


@pytest.fixture
def invoke(app):
    def run(*args: str):
        return runner.invoke(app, ["rules", *args], standalone_mode=False)

    return run


@pytest.fixture
def builtin():
    from paramdoctor.engine import builtin_rules_dir

    return str(builtin_rules_dir())


def test_a_passing_corpus_prints_the_table_and_exits_0(invoke, builtin, tmp_path, records):
    result = invoke("test", builtin, str(write_corpus(tmp_path, records)))
    assert result.exception is None and result.return_value == 0, result.output
    out = result.output
    assert f"{len(load_rules())} rules on 3 samples" in out
    for header in ("rule", "slug", "expected", "TP", "FP", "FN", "precision", "recall", "F1"):
        assert header in out
    assert "macro-F1 over 2 rules: 1.00" in out
    assert "OK: every expectation holds on 3 samples" in out and "did not fire" not in out
    assert "never fired on any sample: PD101" in out  # rules no sample exercises are named


def test_broken_expectations_are_listed_and_exit_1(invoke, builtin, tmp_path, records):
    corpus = write_corpus(
        tmp_path, records, healthy_a={"fire": ["PD301"]}, plateau_a={"fire": ["PD201"], "may_fire": ["PD203"]}
    )
    result = invoke("test", builtin, str(corpus))
    assert result.exception is None and result.return_value == 1
    out = result.output
    assert "1 missed:\n  PD301 did not fire on healthy_a\n" in out
    assert "1 false alarm:\n  PD404 fired on plateau_a: " in out
    assert "FAILED: 2 expectations broken on 2 samples" in out


def test_json_is_one_object(invoke, builtin, tmp_path, records):
    corpus = write_corpus(tmp_path, records, healthy_a={"fire": ["PD301"]})
    result = invoke("test", builtin, str(corpus), "--json")
    assert result.return_value == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["samples"] == 3
    assert data["rules_dir"] == builtin and data["samples_dir"] == str(corpus)
    assert data["misses"] == [{"sample": "healthy_a", "code": "PD301", "slug": "val-loss-turns-up", "reason": None}]
    assert data["overall"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)


def test_set_overrides_a_rule_parameter(invoke, builtin, tmp_path, records):
    corpus = str(write_corpus(tmp_path, records))
    result = invoke("test", builtin, corpus, "--set", "PD301.min_rise=50.0")
    assert result.return_value == 1 and "PD301 did not fire on overfit_a" in result.output


def test_a_users_own_rules_and_runs(invoke, tmp_path, records):
    rules_dir = tmp_path / "my_rules"
    rules_dir.mkdir()
    (rules_dir / "PD901.yaml").write_text(yaml.safe_dump(BASE))
    samples = tmp_path / "my_runs"
    write_sample(samples, "overfit", records["overfit"], {"fire": ["test-val-rises"]})
    write_sample(samples, "healthy", records["healthy"], {"fire": []})
    result = invoke("test", str(rules_dir), str(samples), "--json")
    data = json.loads(result.output)
    assert result.return_value == 0 and [r["code"] for r in data["rules"]] == ["PD901"]
    assert data["rules"][0]["tp"] == 1
    # builtin codes are not under test here: naming one is an input error
    write_sample(samples, "healthy", records["healthy"], {"fire": ["PD301"]})
    result = invoke("test", str(rules_dir), str(samples))
    assert isinstance(result.exception, InputError) and "fire[0]: unknown rule 'PD301'" in str(result.exception)


def test_extra_rules_join_the_rules_under_test(invoke, builtin, tmp_path, records):
    rules_dir = tmp_path / "my_rules"
    rules_dir.mkdir()
    (rules_dir / "PD901.yaml").write_text(yaml.safe_dump(BASE))
    corpus = write_corpus(tmp_path / "runs", records, overfit_a={"fire": ["PD301"], "may_fire": ["PD901"]})
    data = json.loads(invoke("test", builtin, str(corpus), "--rules", str(rules_dir), "--json").output)
    assert data["ok"] and "PD901" in [r["code"] for r in data["rules"]] and len(data["rules"]) == len(load_rules()) + 1


def test_samples_default_to_sample_runs_in_the_working_directory(invoke, tmp_path, records, monkeypatch):
    write_corpus(tmp_path / "sample_runs", records)
    monkeypatch.chdir(tmp_path)
    result = invoke("test", "--json")
    data = json.loads(result.output)
    assert result.return_value == 0 and data["samples_dir"] == str(tmp_path / "sample_runs") and data["samples"] == 3


def test_explaining_a_rule_still_works_and_rejects_stray_paths(invoke):
    assert "PD301 (val-loss-turns-up)" in invoke("PD301").output
    result = invoke("PD301", "extra")
    assert isinstance(result.exception, InputError) and "unexpected 'extra' after 'PD301'" in str(result.exception)
    result = invoke("test", "a", "b", "c")
    assert isinstance(result.exception, InputError) and "at most RULES_DIR and SAMPLES_DIR" in str(result.exception)


@pytest.mark.parametrize(
    ("problem", "wanted"),
    [
        ("bad_expect", "expect.yaml: unknown key 'silent'"),
        ("no_rules_dir", "rules directory not found"),
        ("no_samples_dir", "samples directory not found"),
    ],
)
def test_input_errors_exit_2_with_one_line(tmp_path, records, capsys, builtin, problem, wanted):
    corpus = write_corpus(tmp_path / "runs", records, healthy_a="fire: []\nsilent: [all]\n")
    rules_dir = str(tmp_path / "nowhere") if problem == "no_rules_dir" else builtin
    samples = str(tmp_path / "nowhere") if problem == "no_samples_dir" else str(corpus)
    assert main(["rules", "test", rules_dir, samples]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and wanted in err and err.count("\n") == 1


def test_the_real_entry_point_returns_the_exit_code(tmp_path, records, builtin):
    corpus = str(write_corpus(tmp_path, records))
    assert main(["rules", "test", builtin, corpus, "--json"]) == 0
    write_sample(tmp_path, "healthy_a", records["healthy"], {"fire": ["PD301"]})
    assert main(["rules", "test", builtin, corpus, "--json"]) == 1


def test_rendering_snapshot():
    card = ReportCard(
        rules=(
            RuleScore("PD101", "loss-not-finite", tp=2),
            RuleScore("PD301", "val-loss-turns-up", tp=1, fp=1, fn=1),
            RuleScore("PD404", "update-ratio-too-small"),
        ),
        samples=(
            SampleResult("a", ("PD101",), (), ("PD101",)),
            SampleResult("b", ("PD301",), (), ()),
            SampleResult("c", (), (), ("PD301",)),
        ),
        misses=(Miss("b", "PD301", "val-loss-turns-up"),),
        false_alarms=(FalseAlarm("c", "PD301", "val-loss-turns-up", "val/loss rose 38% after epoch 7"),),
    )
    buffer = io.StringIO()
    render_report_card(card, Console(file=buffer, width=100, color_system=None))
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines == [
        "3 rules on 3 samples",
        "",
        " rule      slug                          expected   TP   FP   FN   precision   recall     F1",
        " ───────────────────────────────────────────────────────────────────────────────────────────",
        " PD101     loss-not-finite                      2    2    0    0        1.00     1.00   1.00",
        " PD301     val-loss-turns-up                    2    1    1    1        0.50     0.50   0.50",
        " PD404     update-ratio-too-small               0    0    0    0           -        -      -",
        "",
        " overall   macro-F1 over 2 rules: 0.75          4    3    1    1        0.75     0.75   0.75",
        "",
        "1 missed:",
        "  PD301 did not fire on b",
        "1 false alarm:",
        "  PD301 fired on c: val/loss rose 38% after epoch 7",
        "never fired on any sample: PD404",
        "FAILED: 2 expectations broken on 2 samples",
    ]


def test_rules_test_imports_nothing_heavy(tmp_path, records, builtin):
    corpus = str(write_corpus(tmp_path, records))
    code = (
        "import sys; from paramdoctor.cli.app import main;"
        f"rc = main(['rules', 'test', {builtin!r}, {corpus!r}]);"
        "heavy = [m for m in ('torch', 'mlflow', 'matplotlib') if m in sys.modules]; print('HEAVY', heavy, rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY [] 0" in out
