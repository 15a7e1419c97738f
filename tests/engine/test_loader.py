import pytest
import yaml

from paramdoctor.engine import find_rule, load_rules
from paramdoctor.errors import RuleError

from tests.engine.test_schema import BASE


def test_user_rules_are_added_to_the_builtin_ones(tmp_path):
    (tmp_path / "PD901.yaml").write_text(yaml.safe_dump(BASE))
    rules = load_rules(extra_dirs=[tmp_path])
    codes = [r.code for r in rules]
    assert "PD901" in codes and "PD301" in codes and codes == sorted(codes)
    assert [r.code for r in load_rules(extra_dirs=[tmp_path], include_builtin=False)] == ["PD901"]


def test_duplicate_codes_name_both_files(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**BASE, "slug": "another-slug"}))
    with pytest.raises(RuleError) as info:
        load_rules(extra_dirs=[tmp_path], include_builtin=False)
    message = str(info.value)
    assert "PD901" in message and "a.yaml" in message and "b.yaml" in message


def test_a_user_rule_may_not_reuse_a_builtin_code(tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({**BASE, "code": "PD301", "slug": "my-own"}))
    with pytest.raises(RuleError, match=r"PD301 is defined twice: in .*PD301.yaml and in .*mine.yaml"):
        load_rules(extra_dirs=[tmp_path])


def test_missing_rule_directory(tmp_path):
    with pytest.raises(RuleError, match="rule directory not found"):
        load_rules(extra_dirs=[tmp_path / "nope"])


def test_find_rule_by_code_slug_and_case_with_suggestions():
    rules = load_rules()
    assert find_rule(rules, "PD301").slug == "val-loss-turns-up"
    assert find_rule(rules, "pd301").code == "PD301"
    assert find_rule(rules, "val-loss-turns-up").code == "PD301"
    with pytest.raises(RuleError, match="did you mean 'val-loss-turns-up'"):
        find_rule(rules, "val-loss-turn-up")
    with pytest.raises(RuleError, match="unknown rule 'PD999'"):
        find_rule(rules, "PD999")
