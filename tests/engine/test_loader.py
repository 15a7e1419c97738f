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


def test_a_rule_file_that_is_not_utf8_is_one_rule_error(tmp_path):
    text = yaml.safe_dump({**BASE, "title": "A test rule TITLE"}, sort_keys=False).encode()
    (tmp_path / "PD901.yaml").write_bytes(text.replace(b"TITLE", b"\xff\xfe"))
    offset = text.index(b"TITLE")
    with pytest.raises(RuleError) as info:
        load_rules(extra_dirs=[tmp_path])
    message = str(info.value)
    assert message.startswith(str(tmp_path / "PD901.yaml")) and "\n" not in message
    assert f"rule file is not UTF-8 (byte 0xff at offset {offset}, line " in message


def test_a_duplicate_key_in_a_rule_file_is_refused_with_its_line(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False) + "severity: info\n"
    (tmp_path / "PD901.yaml").write_text(text)
    line = text.count("\n")
    with pytest.raises(RuleError, match=rf"PD901.yaml: line {line}: duplicate key 'severity' \(first at line \d+\)"):
        load_rules(extra_dirs=[tmp_path], include_builtin=False)


def test_an_alias_bomb_or_a_huge_rule_file_is_refused(tmp_path):
    from tests.config.test_loading import ALIAS_BOMB

    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / "PD901.yaml").write_text(ALIAS_BOMB)
    with pytest.raises(RuleError, match="PD901.yaml: anchors and aliases"):
        load_rules(extra_dirs=[bomb], include_builtin=False)
    big = tmp_path / "big"
    big.mkdir()
    (big / "PD901.yaml").write_text(yaml.safe_dump(BASE) + "#" * (1 << 20))
    with pytest.raises(RuleError, match="PD901.yaml: rule file is larger than 1 MiB"):
        load_rules(extra_dirs=[big], include_builtin=False)


def test_a_rule_directory_the_system_cannot_look_at_is_one_rule_error(tmp_path, monkeypatch, capsys):
    """A name longer than the file system allows (ENAMETOOLONG from is_dir) names the directory."""
    from paramdoctor.cli.app import main

    name = "a" * 300
    with pytest.raises(RuleError, match=rf"^{name}: cannot read the rule directory \(File name too long\)"):
        load_rules(extra_dirs=[name])
    monkeypatch.chdir(tmp_path)
    assert main(["rules", "--rules", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name}: cannot read the rule directory") and err.count("\n") == 1
