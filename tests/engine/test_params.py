import pytest

from paramdoctor.engine import diagnose, load_project_params, load_rules, merge_params, parse_param_overrides, resolve_params
from paramdoctor.errors import RuleError

from tests.rules import synthetic


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def test_parse_param_overrides_reads_yaml_scalars():
    assert parse_param_overrides(["PD301.min_rise=0.2", "PD301.persistence=4", "val-near-chance.max_over_chance=2"]) == {
        "PD301": {"min_rise": 0.2, "persistence": 4},
        "val-near-chance": {"max_over_chance": 2},
    }
    for bad in ("PD301=0.2", "min_rise=0.2", "PD301.min_rise"):
        with pytest.raises(RuleError, match="expected RULE.PARAM=VALUE"):
            parse_param_overrides([bad])


def test_resolve_params_by_code_or_slug_and_checks_names_and_types(rules):
    resolved = resolve_params(rules, {"val-loss-turns-up": {"min_rise": 0.3}, "PD204": {"min_wasted": 12.0}})
    assert resolved["PD301"]["min_rise"] == 0.3 and resolved["PD301"]["persistence"] == 3
    assert resolved["PD204"]["min_wasted"] == 12 and isinstance(resolved["PD204"]["min_wasted"], int)
    with pytest.raises(RuleError, match=r"unknown rule 'PD31'.*did you mean"):
        resolve_params(rules, {"PD31": {"min_rise": 0.3}})
    with pytest.raises(RuleError, match=r"PD301 \(val-loss-turns-up\) has no parameter 'min_rse' \(did you mean 'min_rise'\?\)"):
        resolve_params(rules, {"PD301": {"min_rse": 0.3}})
    with pytest.raises(RuleError, match="expected float like the default 0.1, got 'high'"):
        resolve_params(rules, {"PD301": {"min_rise": "high"}})
    with pytest.raises(RuleError, match="expected int"):
        resolve_params(rules, {"PD301": {"persistence": 2.5}})


def test_project_file_params_and_disable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_project_params().params == {}
    (tmp_path / "paramdoctor.yaml").write_text(
        "experiment: ignored-by-the-engine\n"
        "rules:\n"
        "  PD301: {min_rise: 0.5}\n"
        "  best-epoch-early: {min_wasted: 20}\n"
        "  disable: [PD204]\n"
    )
    project = load_project_params()
    assert project.params == {"PD301": {"min_rise": 0.5}, "best-epoch-early": {"min_wasted": 20}}
    assert project.disable == ("PD204",)
    assert project.path == tmp_path / "paramdoctor.yaml"


def test_project_file_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("rules:\n  PD301: 0.5\n")
    with pytest.raises(RuleError, match=r"rules.PD301: must be a mapping"):
        load_project_params(path)
    path.write_text("rules:\n  disable: 3\n")
    with pytest.raises(RuleError, match="rules.disable"):
        load_project_params(path)
    with pytest.raises(RuleError, match="project file not found"):
        load_project_params(tmp_path / "missing.yaml")


def test_merge_params_later_layers_win():
    merged = merge_params({"PD301": {"min_rise": 0.5, "persistence": 2}}, {"PD301": {"min_rise": 0.2}})
    assert merged == {"PD301": {"min_rise": 0.2, "persistence": 2}}


def test_overrides_change_the_verdict(rules):
    record = synthetic.sick("PD301")
    assert "PD301" in [f.code for f in diagnose(record, rules).findings]
    strict = diagnose(record, rules, params={"PD301": {"min_rise": 50.0}})
    assert "PD301" not in [f.code for f in strict.findings]
    disabled = diagnose(record, rules, disable=["val-loss-turns-up"])
    assert "PD301" not in [f.code for f in disabled.findings]
    assert any(s.code == "PD301" and "disabled" in s.reason for s in disabled.skipped)
    with pytest.raises(RuleError, match="disable: unknown rule 'PD3011'"):
        diagnose(record, rules, disable=["PD3011"])


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("PD301.min_rise=.nan", "--set PD301.min_rise=.nan: min_rise must be a finite number, got nan"),
        ("PD301.min_rise=.inf", "--set PD301.min_rise=.inf: min_rise must be a finite number, got inf"),
        ("PD301.min_rise=-.inf", "--set PD301.min_rise=-.inf: min_rise must be a finite number, got -inf"),
    ],
)
def test_set_refuses_non_finite_values(item, expected):
    with pytest.raises(RuleError) as info:
        parse_param_overrides([item])
    assert str(info.value) == expected


@pytest.mark.parametrize("value", ["-5", "0", "0.5"])
def test_set_refuses_a_persistence_below_one_and_names_the_option(rules, value):
    overrides = parse_param_overrides([f"PD301.persistence={value}"])
    with pytest.raises(RuleError) as info:
        resolve_params(rules, overrides)
    message = str(info.value)
    assert message.startswith(f"--set PD301.persistence={value}: rule PD301 parameter persistence")
    assert "whole number >= 1" in message


def test_count_params_are_checked_and_negative_thresholds_pass(rules):
    with pytest.raises(RuleError, match="rule PD204 parameter min_wasted counts points, epochs or events"):
        resolve_params(rules, {"PD204": {"min_wasted": -1}})
    with pytest.raises(RuleError, match="rule PD301 parameter min_rise must be a finite number, got nan"):
        resolve_params(rules, {"PD301": {"min_rise": float("nan")}})
    assert resolve_params(rules, {"PD402": {"max_log10_change": -4.0}})["PD402"]["max_log10_change"] == -4.0


def test_project_file_values_are_checked_and_named(tmp_path, monkeypatch, rules):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "paramdoctor.yaml"
    path.write_text("rules:\n  PD301: {min_rise: .nan}\n")
    with pytest.raises(RuleError) as info:
        load_project_params()
    assert str(info.value) == f"{path}: rules.PD301.min_rise: must be a finite number, got nan"
    path.write_text("rules:\n  val-loss-turns-up: {persistence: -5}\n")
    project = load_project_params()
    with pytest.raises(RuleError) as info:
        resolve_params(rules, merge_params(project.params, parse_param_overrides(["PD301.min_rise=0.2"])))
    assert str(info.value).startswith(f"{path}: rules.val-loss-turns-up.persistence: rule PD301 parameter persistence counts")
    # --set wins over the project file, and the error names where the winning value came from
    merged = merge_params(project.params, parse_param_overrides(["val-loss-turns-up.persistence=0"]))
    with pytest.raises(RuleError, match=r"^--set val-loss-turns-up.persistence=0: "):
        resolve_params(rules, merged)


def test_a_project_file_that_is_not_utf8_or_has_a_duplicate_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "paramdoctor.yaml"
    path.write_bytes(b"rules:\n  PD301: {min_rise: 0.2}  # \xe9\n")
    with pytest.raises(RuleError) as info:
        load_project_params()
    assert str(info.value) == f"{path}: project file is not UTF-8 (byte 0xe9 at offset 35, line 2); save it as UTF-8"
    path.write_text("rules:\n  PD301: {min_rise: 0.2}\nrules:\n  disable: [PD204]\n")
    with pytest.raises(RuleError, match=r"paramdoctor.yaml: line 3: duplicate key 'rules' \(first at line 1\)"):
        load_project_params()
