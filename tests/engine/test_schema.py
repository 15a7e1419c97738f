"""Rule files are validated on load: every mistake names the file and the key."""

import copy

import pytest
import yaml

from paramdoctor.engine import builtin_rules_dir, load_rule_file, load_rules
from paramdoctor.errors import RuleError

BASE = {
    "code": "PD901",
    "slug": "test-val-rises",
    "title": "A test rule",
    "category": "overfitting",
    "severity": "error",
    "requires": ["train/loss", "val/loss"],
    "min_points": 5,
    "signal": "divergence_onset",
    "params": {"min_rise": 0.1, "persistence": 3},
    "when": [{"field": "rise", "op": ">=", "param": "min_rise"}],
    "for": {"param": "persistence"},
    "evidence": "val/loss rose {rise:.0%} after {unit} {best_x:g}",
    "doc": {"what": "w", "why": "y", "fix": "f", "example": "e"},
    "patch": [{"key": "optimizer.weight_decay", "op": "multiply", "value": 10, "max": 0.1, "reason": "r"}],
}


def write(tmp_path, data, name="PD901.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def mutate(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = value
    return data


def error_for(tmp_path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_a_valid_rule_loads_with_its_path(tmp_path):
    rule = load_rule_file(write(tmp_path, BASE))
    assert rule.code == "PD901" and rule.for_.param == "persistence" and rule.path.endswith("PD901.yaml")
    assert rule.persistence(rule.params) == 3


def test_unknown_top_level_key_names_it_with_a_suggestion(tmp_path):
    data = mutate(severty="error")
    message = error_for(tmp_path, data)
    assert "unknown key 'severty'" in message and "did you mean 'severity'" in message


def test_misspelt_required_key_reports_the_unknown_key_not_only_the_missing_one(tmp_path):
    data = copy.deepcopy(BASE)
    data["severty"] = data.pop("severity")
    assert "unknown key 'severty'" in error_for(tmp_path, data)


@pytest.mark.parametrize(
    "where, data, expected",
    [
        ("when", mutate(when=[{"field": "rise", "op": ">=", "parm": "min_rise"}]), "unknown key 'parm' at when[0] (did you mean 'param'?)"),
        ("doc", mutate(doc={"what": "w", "why": "y", "fix": "f", "exmple": "e"}), "unknown key 'exmple' at doc (did you mean 'example'?)"),
        ("patch", mutate(patch=[{"key": "optimizer.lr", "op": "set", "value": 1, "reason": "r", "clamp": 2}]), "unknown key 'clamp' at patch[0]"),
        ("for", mutate(**{"for": {"param": "persistence", "n": 2}}), "unknown key 'n' at for"),
    ],
)
def test_unknown_nested_keys(tmp_path, where, data, expected):
    assert expected in error_for(tmp_path, data)


def test_wrong_type(tmp_path):
    message = error_for(tmp_path, mutate(min_points="many"))
    assert "min_points" in message and "'many'" in message


def test_bad_category_lists_the_choices_and_suggests(tmp_path):
    message = error_for(tmp_path, mutate(category="overfit"))
    assert "category: must be one of" in message and "did you mean 'overfitting'" in message


def test_bad_severity(tmp_path):
    assert "severity: must be one of" in error_for(tmp_path, mutate(severity="fatal"))


def test_unknown_signal_is_refused(tmp_path):
    message = error_for(tmp_path, mutate(signal="divergence"))
    assert "signal: unknown signal 'divergence'" in message and "did you mean 'divergence_onset'" in message


def test_unknown_patch_key_is_refused_with_a_suggestion(tmp_path):
    data = mutate(patch=[{"key": "optimizer.weight_decy", "op": "multiply", "value": 2, "reason": "r"}])
    message = error_for(tmp_path, data)
    assert "patch[0].key" in message and "'optimizer.weight_decy'" in message and "optimizer.weight_decay" in message


def test_non_numeric_multiply_is_refused(tmp_path):
    data = mutate(patch=[{"key": "optimizer.lr", "op": "multiply", "value": "ten", "reason": "r"}])
    assert "needs a numeric value" in error_for(tmp_path, data)


def test_condition_on_a_field_the_signal_does_not_measure(tmp_path):
    message = error_for(tmp_path, mutate(when=[{"field": "rse", "op": ">=", "value": 0.1}]))
    assert "when[0].field" in message and "did you mean 'rise'" in message


def test_condition_on_an_undeclared_param(tmp_path):
    message = error_for(tmp_path, mutate(when=[{"field": "rise", "op": ">=", "param": "min_rse"}]))
    assert "when[0].param" in message and "'min_rse'" in message


def test_condition_needs_exactly_one_operand(tmp_path):
    both = mutate(when=[{"field": "rise", "op": ">=", "param": "min_rise", "value": 0.2}])
    assert "exactly one of 'param' or 'value'" in error_for(tmp_path, both)


def test_evidence_templates_are_restricted(tmp_path):
    assert "plain name" in error_for(tmp_path, mutate(evidence="{rise.__class__}"))
    assert "plain name" in error_for(tmp_path, mutate(evidence="{rise[0]}"))
    assert "conversions are not allowed" in error_for(tmp_path, mutate(evidence="{rise!r}"))
    assert "unknown field {risee}" in error_for(tmp_path, mutate(evidence="{risee:.0%}"))


def test_required_series_of_the_signal_must_be_listed(tmp_path):
    assert "requires: signal divergence_onset reads val/loss" in error_for(tmp_path, mutate(requires=["train/loss"]))


def test_series_must_be_one_the_signal_reads(tmp_path):
    data = mutate(signal="loss_explosion", requires=[], series=["val/acc"], when=[{"field": "growth", "op": ">=", "value": 10}])
    data.pop("for")
    data["evidence"] = "{growth}"
    assert "cannot read 'val/acc'" in error_for(tmp_path, data)


def test_for_needs_a_signal_with_a_persistence_count(tmp_path):
    data = mutate(signal="update_ratio", requires=["telemetry/*/update_ratio"], when=[{"field": "highest", "op": ">=", "value": 0.1}])
    data["evidence"] = "{highest}"
    assert "no persistence count" in error_for(tmp_path, data)


def test_bad_code_and_slug(tmp_path):
    assert "rule code must look like PD301" in error_for(tmp_path, mutate(code="pd-1"))
    assert "slug must be lowercase" in error_for(tmp_path, mutate(slug="Val Loss"))


def test_yaml_syntax_errors_and_non_mappings(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("code: [PD1\n")
    with pytest.raises(RuleError, match="broken.yaml.*invalid YAML"):
        load_rule_file(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(RuleError, match="must be a mapping"):
        load_rule_file(path)


def test_every_builtin_rule_validates_and_is_documented():
    rules = load_rules()
    assert builtin_rules_dir().name == "rules"
    assert len(rules) >= 12
    assert len({r.code for r in rules}) == len(rules) and len({r.slug for r in rules}) == len(rules)
    for rule in rules:
        assert rule.path.endswith(f"{rule.code}.yaml"), "one file per rule, named by its code"
        assert all(len(text) > 40 for text in (rule.doc.what, rule.doc.why, rule.doc.fix)), rule.code
        assert rule.patch, f"{rule.code} prescribes nothing"


def test_patch_needs_exactly_one_of_value_and_value_from(tmp_path):
    both = mutate(patch=[{"key": "optimizer.lr", "op": "multiply", "value": 2, "value_from": "rise", "reason": "r"}])
    assert "exactly one of 'value' or 'value_from'" in error_for(tmp_path, both)
    neither = mutate(patch=[{"key": "optimizer.lr", "op": "multiply", "reason": "r"}])
    assert "exactly one of 'value' or 'value_from'" in error_for(tmp_path, neither)


def test_value_from_must_name_a_measured_field(tmp_path):
    data = mutate(patch=[{"key": "optimizer.lr", "op": "multiply", "value_from": "rse", "reason": "r"}])
    message = error_for(tmp_path, data)
    assert "patch[0].value_from" in message and "did you mean 'rise'" in message


def test_only_if_must_name_known_config_keys(tmp_path):
    data = mutate(patch=[{"key": "optimizer.lr", "op": "multiply", "value": 2, "only_if": {"optimizer.nme": "sgd"}, "reason": "r"}])
    message = error_for(tmp_path, data)
    assert "only_if names unknown config key 'optimizer.nme'" in message and "optimizer.name" in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"min_rise": float("nan"), "persistence": 3}, "params.min_rise: must be a finite number, got nan"),
        ({"min_rise": float("inf"), "persistence": 3}, "params.min_rise: must be a finite number, got inf"),
        ({"min_rise": float("-inf"), "persistence": 3}, "params.min_rise: must be a finite number, got -inf"),
    ],
    ids=["nan", "inf", "-inf"],
)
def test_rule_params_must_be_finite(tmp_path, params, expected):
    assert expected in error_for(tmp_path, mutate(params=params))


def test_counts_must_be_at_least_one_while_thresholds_may_be_zero_or_negative(tmp_path):
    message = error_for(tmp_path, mutate(params={"min_rise": 0.1, "persistence": -5}))
    assert "params.persistence: counts points, epochs or events and must be a whole number >= 1, got -5" in message
    assert "write 0.0 for a threshold" in error_for(tmp_path, mutate(params={"min_rise": 0.1, "persistence": 0}))
    rule = load_rule_file(write(tmp_path, mutate(params={"min_rise": -0.5, "persistence": 1})))
    assert rule.params["min_rise"] == -0.5
    rule = load_rule_file(write(tmp_path, mutate(params={"min_rise": 0.0, "persistence": 2})))
    assert rule.params["min_rise"] == 0.0


def test_a_persistence_param_must_be_a_whole_number(tmp_path):
    message = error_for(tmp_path, mutate(params={"min_rise": 0.1, "persistence": 3.0}))
    assert "for.param: params.persistence is a persistence window in points" in message and "got 3.0" in message


def test_thresholds_and_patch_values_must_be_finite(tmp_path):
    data = mutate(when=[{"field": "rise", "op": ">=", "value": float("nan")}])
    assert "condition on 'rise': value must be a finite number, got nan" in error_for(tmp_path, data)
    data = mutate(patch=[{"key": "optimizer.weight_decay", "op": "multiply", "value": float("inf"), "reason": "r"}])
    assert "patch on optimizer.weight_decay: value must be a finite number, got inf" in error_for(tmp_path, data)
    data = mutate(patch=[{"key": "optimizer.weight_decay", "op": "multiply", "value": 10, "max": float("nan"), "reason": "r"}])
    assert "patch on optimizer.weight_decay: max must be a finite number, got nan" in error_for(tmp_path, data)


def test_evidence_format_widths_and_length_are_bounded(tmp_path):
    message = error_for(tmp_path, mutate(evidence="{rise:>100000000}"))
    assert "evidence: template field {rise:>100000000}: width 100000000 is above the limit of 30" in message
    assert "precision 500 is above the limit" in error_for(tmp_path, mutate(evidence="{rise:.500f}"))
    assert "above the limit of 1000" in error_for(tmp_path, mutate(evidence="{rise} " * 400))
