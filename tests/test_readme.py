"""The README stays true: every config key and rule is documented, and CI runs its test command."""

from __future__ import annotations

from pathlib import Path

from paramdoctor.config import known_keys
from paramdoctor.engine import load_rules

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_config_key_is_in_the_readme():
    missing = [k for k in known_keys() if f"`{k}`" not in README]
    assert not missing, f"config keys missing from README.md: {missing}"


def test_the_readme_rule_table_is_the_generated_one():
    from paramdoctor.cli.rules_cmd import markdown_table

    missing = [r.code for r in load_rules() if f"| {r.code} | `{r.slug}` |" not in README]
    assert not missing, f"rules missing from README.md's rule table: {missing}"
    assert markdown_table(load_rules()) in README, "README.md's rule table is stale: paste `paramdoctor rules --markdown`"


def test_ci_runs_the_readme_test_command():
    assert "make test" in README and "make demo" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
