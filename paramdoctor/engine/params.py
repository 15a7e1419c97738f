"""Rule parameters: defaults from the rule file, then the project file, then the command line.

``paramdoctor.yaml`` in the working directory may hold a ``rules:`` section::

    rules:
      PD301: {min_rise: 0.2}          # by code ...
      overfitting-gap-widens: {min_acc_gap: 0.15}   # ... or by slug
      disable: [PD204]

and ``--set PD301.min_rise=0.2`` overrides both. Unknown rules and
parameters fail with a suggestion; a value must have the type of the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from paramdoctor.config.loading import load_yaml_text, parse_value, suggest
from paramdoctor.engine.schema import Rule
from paramdoctor.errors import ConfigError, RuleError

PROJECT_FILE = "paramdoctor.yaml"

Params = dict[str, dict[str, Any]]  # rule code or slug -> {param: value}


@dataclass(frozen=True)
class ProjectRules:
    """The ``rules:`` section of a project file."""

    params: Params = field(default_factory=dict)
    disable: tuple[str, ...] = ()
    path: Path | None = None


def parse_param_overrides(items: Iterable[str]) -> Params:
    """``["PD301.min_rise=0.2"]`` -> ``{"PD301": {"min_rise": 0.2}}`` (values parsed as YAML scalars)."""
    out: Params = {}
    for item in items:
        target, sep, raw = item.partition("=")
        rule, dot, name = target.strip().partition(".")
        if not sep or not dot or not rule or not name:
            raise RuleError(f"rule parameter {item!r}: expected RULE.PARAM=VALUE, e.g. PD301.min_rise=0.2")
        out.setdefault(rule, {})[name.strip()] = parse_value(raw.strip())
    return out


def load_project_params(path: str | Path | None = None) -> ProjectRules:
    """The ``rules:`` section of ``paramdoctor.yaml`` (in the working directory by default); empty when absent."""
    explicit = path is not None
    path = Path(path) if explicit else Path.cwd() / PROJECT_FILE
    if not path.is_file():
        if explicit:
            raise RuleError(f"{path}: project file not found")
        return ProjectRules()
    try:
        data = load_yaml_text(path.read_text(), str(path))
    except ConfigError as exc:
        raise RuleError(str(exc)) from None
    except OSError as exc:
        raise RuleError(f"{path}: cannot read project file ({exc.strerror or exc})") from None
    if data is None:
        return ProjectRules(path=path)
    if not isinstance(data, dict):
        raise RuleError(f"{path}: a project file must be a mapping of sections, got {type(data).__name__}")
    section = data.get("rules") or {}
    if not isinstance(section, dict):
        raise RuleError(f"{path}: rules: must be a mapping of rule code or slug to parameters, plus disable: [codes]")
    params: Params = {}
    disable: tuple[str, ...] = ()
    for key, value in section.items():
        if key == "disable":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuleError(f"{path}: rules.disable: must be a list of rule codes or slugs, got {value!r}")
            disable = tuple(value)
            continue
        if not isinstance(value, dict):
            raise RuleError(f"{path}: rules.{key}: must be a mapping of parameter to value, got {value!r}")
        params[str(key)] = {str(k): v for k, v in value.items()}
    return ProjectRules(params=params, disable=disable, path=path)


def merge_params(*layers: Mapping[str, Mapping[str, Any]]) -> Params:
    """Later layers override earlier ones, parameter by parameter."""
    out: Params = {}
    for layer in layers:
        for rule, values in layer.items():
            out.setdefault(rule, {}).update(values)
    return out


def resolve_params(rules: Iterable[Rule], overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each rule's parameters (by code): its defaults with the overrides applied and checked."""
    rules = list(rules)
    resolved = {r.code: dict(r.params) for r in rules}
    for target, values in (overrides or {}).items():
        rule = _rule_for(rules, target, "rule parameter override")
        for name, value in values.items():
            if name not in rule.params:
                declared = ", ".join(rule.params) or "none"
                raise RuleError(
                    f"rule {rule.code} ({rule.slug}) has no parameter {name!r}{suggest(name, rule.params)}; its parameters: {declared}"
                )
            resolved[rule.code][name] = _check_type(rule, name, value)
    return resolved


def resolve_disabled(rules: Iterable[Rule], disable: Iterable[str]) -> set[str]:
    """The codes of the rules named (by code or slug) in ``disable``."""
    rules = list(rules)
    return {_rule_for(rules, name, "disable").code for name in disable}


def _rule_for(rules: list[Rule], target: str, what: str) -> Rule:
    for rule in rules:
        if target in (rule.code, rule.slug) or target.upper() == rule.code:
            return rule
    names = [r.code for r in rules] + [r.slug for r in rules]
    raise RuleError(f"{what}: unknown rule {target!r}{suggest(target, names)}; `paramdoctor rules` lists them")


def _check_type(rule: Rule, name: str, value: Any) -> Any:
    default = rule.params[name]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(value, int):
            ok = float(value).is_integer()
            value = int(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise RuleError(
            f"rule {rule.code} parameter {name}: expected {type(default).__name__} like the default {default!r}, got {value!r}"
        )
    return value
