"""Load rule files: the built-in ``rules/`` directory plus any user directories.

Every problem is one :class:`RuleError` line that names the file and the key
("rules/PD301.yaml: unknown key 'severty' (did you mean 'severity'?)").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from paramdoctor.config.loading import describe_value, load_yaml_text, read_text_file, suggest
from paramdoctor.engine.schema import Rule
from paramdoctor.errors import ConfigError, RuleError


def builtin_rules_dir() -> Path:
    """``paramdoctor/builtin_rules`` in an installed wheel, else ``<repo>/rules`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "builtin_rules"
    if installed.is_dir():
        return installed
    return package.parent / "rules"


def load_rule_file(path: str | Path) -> Rule:
    """Read and validate one rule file."""
    path = Path(path)
    text = read_text_file(path, "rule file", RuleError)
    try:
        data = load_yaml_text(text, str(path))
    except ConfigError as exc:
        raise RuleError(str(exc)) from None
    if not isinstance(data, dict):
        raise RuleError(f"{path}: a rule file must be a mapping (code, slug, title, ...), got {type(data).__name__}")
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        raise RuleError(f"{path}: {describe_error(exc, data)}") from None
    rule._path = str(path)
    return rule


def load_rules_dir(directory: str | Path) -> list[Rule]:
    """The rules in ``directory``'s ``*.yaml``/``*.yml`` files.

    Any OSError while looking at the directory (a name too long for the file
    system, a folder that cannot be listed) is a RuleError naming it.
    """
    directory = Path(directory)
    try:
        if not directory.is_dir():
            raise RuleError(f"{directory}: rule directory not found (pass a directory of *.yaml rule files)")
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    except OSError as exc:
        raise RuleError(f"{directory}: cannot read the rule directory ({exc.strerror or exc}); pass a directory of *.yaml rule files") from None
    return [load_rule_file(f) for f in files]


def load_rules(extra_dirs: Iterable[str | Path] = (), include_builtin: bool = True) -> list[Rule]:
    """The built-in rules and those in ``extra_dirs``, sorted by code; duplicate codes or slugs fail."""
    rules: list[Rule] = []
    if include_builtin:
        rules.extend(load_rules_dir(builtin_rules_dir()))
    for directory in extra_dirs:
        rules.extend(load_rules_dir(directory))
    _reject_duplicates(rules)
    return sorted(rules, key=lambda r: r.code)


def find_rule(rules: Iterable[Rule], code_or_slug: str) -> Rule:
    """The rule with this code (case-insensitive) or slug; RuleError with a suggestion otherwise."""
    rules = list(rules)
    wanted = code_or_slug.strip()
    for rule in rules:
        if rule.code == wanted.upper() or rule.slug == wanted.lower():
            return rule
    names = [r.code for r in rules] + [r.slug for r in rules]
    raise RuleError(f"unknown rule {code_or_slug!r}{suggest(wanted, names)}; `paramdoctor rules` lists them")


def _reject_duplicates(rules: list[Rule]) -> None:
    by_code: dict[str, Rule] = {}
    by_slug: dict[str, Rule] = {}
    for rule in rules:
        for index, key in ((by_code, rule.code), (by_slug, rule.slug)):
            other = index.get(key)
            if other is not None:
                raise RuleError(
                    f"rule {key} is defined twice: in {other.path} and in {rule.path} (codes and slugs must be unique)"
                )
            index[key] = rule


# --- one readable line from a pydantic error ------------------------------------------


def describe_error(exc: ValidationError, data: Any) -> str:
    errors = exc.errors()
    # an unknown key explains the errors it causes (a misspelt required key is also "missing")
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = err["loc"]
    where = _loc_text(loc)
    kind = err["type"]
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1], data)
        parent = _loc_text(loc[:-1]) or "top level"
        return f"unknown key {key!r} at {parent}{suggest(key, allowed)}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return f"missing required key {where!r}"
    if kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        got = err.get("input")
        options = [o.strip().strip("'") for o in str(expected).replace(" or ", ", ").split(",")]
        return f"{where}: must be one of {expected}, got {describe_value(got)}{suggest(str(got)[:200], options)}"
    if kind == "value_error":
        return f"{where + ': ' if where and not msg.startswith(where.split('[')[0]) else ''}{msg}"
    got = err.get("input")
    return f"{where}: {msg}, got {describe_value(got)}" if where else msg


def _loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "union[")):
            continue
        else:
            text += ("." if text else "") + ("for" if part == "for_" else str(part))
    return text


def _allowed_keys(loc: tuple, data: Any) -> list[str]:
    """The keys the model at ``loc`` accepts (walks the Rule schema along the location)."""
    model: type[BaseModel] | None = Rule
    for part in loc:
        if model is None:
            break
        if isinstance(part, int):
            continue
        name = "for_" if part == "for" else str(part)
        info = model.model_fields.get(name)
        if info is None:
            model = None
            break
        model = _model_in(info.annotation)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None
