"""Rule parameters: defaults from the rule file, then the project file, then the command line.

``paramdoctor.yaml`` in the working directory may hold a ``rules:`` section::

    rules:
      PD301: {min_rise: 0.2}          # by code ...
      overfitting-gap-widens: {min_acc_gap: 0.15}   # ... or by slug
      disable: [PD204]

and ``--set PD301.min_rise=0.2`` overrides both. Unknown rules and
parameters fail with a suggestion; a value must have the type of the default,
be finite, and a count (a parameter with a whole-number default, such as
``persistence``) must be >= 1. Each error names where the value came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from paramdoctor.config.loading import describe_value, load_yaml_text, parse_value, read_text_file, suggest
from paramdoctor.engine.schema import Rule, is_count, value_problem
from paramdoctor.errors import ConfigError, RuleError

PROJECT_FILE = "paramdoctor.yaml"

Params = dict[str, dict[str, Any]]  # rule code or slug -> {param: value}


class ParamLayer(dict):
    """A ``Params`` mapping that remembers where each value came from, for error messages.

    ``origins[(rule, param)]`` is e.g. ``--set PD301.min_rise=2`` or
    ``paramdoctor.yaml: rules.PD301.min_rise``. A plain dict works wherever a
    ParamLayer does; its values are then reported as "rule parameter override".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins: dict[tuple[str, str], str] = {}


def _origin(layer: Mapping[str, Any], rule: str, name: str) -> str | None:
    return getattr(layer, "origins", {}).get((rule, name))


@dataclass(frozen=True)
class ProjectRules:
    """The ``rules:`` section of a project file."""

    params: Params = field(default_factory=dict)
    disable: tuple[str, ...] = ()
    path: Path | None = None


def parse_param_overrides(items: Iterable[str]) -> Params:
    """``["PD301.min_rise=0.2"]`` -> ``{"PD301": {"min_rise": 0.2}}`` (values parsed as YAML scalars)."""
    out = ParamLayer()
    for item in items:
        target, sep, raw = item.partition("=")
        rule, dot, name = target.strip().partition(".")
        if not sep or not dot or not rule or not name:
            raise RuleError(f"rule parameter {item!r}: expected RULE.PARAM=VALUE, e.g. PD301.min_rise=0.2")
        try:
            value = parse_value(raw.strip(), f"--set {target.strip()}")
        except ConfigError as exc:
            raise RuleError(str(exc)) from None
        problem = value_problem(value)
        if problem:
            raise RuleError(f"--set {item}: {name.strip()} {problem}")
        out.setdefault(rule, {})[name.strip()] = value
        out.origins[(rule, name.strip())] = f"--set {item}"
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
        data = load_yaml_text(read_text_file(path, "project file", RuleError), str(path))
    except ConfigError as exc:
        raise RuleError(str(exc)) from None
    if data is None:
        return ProjectRules(path=path)
    if not isinstance(data, dict):
        raise RuleError(f"{path}: a project file must be a mapping of sections, got {type(data).__name__}")
    section = data.get("rules") or {}
    if not isinstance(section, dict):
        raise RuleError(f"{path}: rules: must be a mapping of rule code or slug to parameters, plus disable: [codes]")
    params = ParamLayer()
    disable: tuple[str, ...] = ()
    for key, value in section.items():
        if key == "disable":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuleError(f"{path}: rules.disable: must be a list of rule codes or slugs, got {describe_value(value)}")
            disable = tuple(value)
            continue
        if not isinstance(value, dict):
            raise RuleError(f"{path}: rules.{key}: must be a mapping of parameter to value, got {describe_value(value)}")
        params[str(key)] = {str(k): v for k, v in value.items()}
        for name, item in params[str(key)].items():
            where = f"{path}: rules.{key}.{name}"
            problem = value_problem(item)
            if problem:
                raise RuleError(f"{where}: {problem}")
            params.origins[(str(key), name)] = where
    return ProjectRules(params=params, disable=disable, path=path)


def merge_params(*layers: Mapping[str, Mapping[str, Any]]) -> Params:
    """Later layers override earlier ones, parameter by parameter (each value keeps its origin)."""
    out = ParamLayer()
    for layer in layers:
        for rule, values in layer.items():
            out.setdefault(rule, {}).update(values)
            for name in values:
                origin = _origin(layer, rule, name)
                if origin is None:
                    out.origins.pop((rule, name), None)
                else:
                    out.origins[(rule, name)] = origin
    return out


def resolve_params(rules: Iterable[Rule], overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each rule's parameters (by code): its defaults with the overrides applied and checked."""
    rules = list(rules)
    resolved = {r.code: dict(r.params) for r in rules}
    overrides = overrides or {}
    for target, values in overrides.items():
        first = next((o for name in values if (o := _origin(overrides, target, name))), None)
        rule = _rule_for(rules, target, f"{first}: rule parameter override" if first else "rule parameter override")
        for name, value in values.items():
            origin = _origin(overrides, target, name)
            if name not in rule.params:
                declared = ", ".join(rule.params) or "none"
                raise RuleError(
                    f"{origin + ': ' if origin else ''}rule {rule.code} ({rule.slug}) has no parameter {name!r}"
                    f"{suggest(name, rule.params)}; its parameters: {declared}"
                )
            resolved[rule.code][name] = _check_value(rule, name, value, origin)
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


def _check_value(rule: Rule, name: str, value: Any, origin: str | None) -> Any:
    """The value in the default's type; RuleError for a wrong type, a non-finite number or a count below 1."""
    default = rule.params[name]
    where = f"{origin}: " if origin else ""
    problem = value_problem(value, count=is_count(default))
    if problem:
        raise RuleError(f"{where}rule {rule.code} parameter {name} {problem}")
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
            f"{where}rule {rule.code} parameter {name}: expected {type(default).__name__} like the default {default!r}, got {describe_value(value)}"
        )
    return value
