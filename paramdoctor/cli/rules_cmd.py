"""``paramdoctor rules [CODE_OR_SLUG]``: list the rules, or explain one the way ``ruff rule F541`` does.

``paramdoctor rules test [RULES_DIR] [SAMPLES_DIR]`` scores the rules on runs
with known answers (``paramdoctor.cli.rules_test``); "test" is no rule code.

Reads only YAML and the rule schema: nothing from torch, MLflow or matplotlib
is imported, so it answers instantly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "rules",
        help="List the diagnosis rules, or explain one (what it detects, why, what to change, its parameters and "
        "patch). `rules test [RULES_DIR] [SAMPLES_DIR]` scores the rules on sample runs with known answers "
        "(precision, recall, F1; exit 0 when every expectation holds, 1 when one is broken).",
    )(rules)


def rules(
    code: Optional[str] = typer.Argument(
        None, metavar="CODE_OR_SLUG|test", help="A rule code (PD301) or slug (val-loss-turns-up) to explain, or `test`."
    ),
    test_dirs: Optional[list[str]] = typer.Argument(None, hidden=True, metavar="RULES_DIR SAMPLES_DIR"),
    rules_dirs: Optional[list[Path]] = typer.Option(None, "--rules", help="A directory of your own rule files (*.yaml); repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table or text."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print the rule list as a Markdown table (the README's)."),
    set_params: Optional[list[str]] = typer.Option(
        None,
        "--set",
        metavar="CODE.param=VALUE",
        help="With `test`: score with a rule parameter overridden, e.g. PD301.min_rise=0.2.",
    ),
    split: Optional[str] = typer.Option(
        None,
        "--split",
        metavar="calibration|test",
        help="With `test`: show only this split of the real corpus (tune thresholds on calibration alone).",
    ),
) -> Optional[int]:
    if code == "test":
        from paramdoctor.cli.rules_test import rules_test

        return rules_test(
            list(test_dirs or []),
            extra_rule_dirs=rules_dirs or (),
            set_params=set_params or (),
            as_json=as_json,
            split=split,
        )
    if test_dirs or set_params or split:
        from paramdoctor.errors import InputError

        extra = " ".join(test_dirs or []) or ("--set" if set_params else "--split")
        raise InputError(
            f"rules: unexpected {extra!r} after {code!r}; explain one rule with `paramdoctor rules CODE`, "
            "or score them with `paramdoctor rules test [RULES_DIR] [SAMPLES_DIR]`"
        )

    from paramdoctor.engine.loader import find_rule, load_rules

    loaded = load_rules(extra_dirs=rules_dirs or ())
    if code is None:
        if as_json:
            typer.echo(json.dumps([rule_to_dict(r) for r in loaded], indent=1))
        elif as_markdown:
            typer.echo(markdown_table(loaded))
        else:
            _print_table(loaded)
        return
    rule = find_rule(loaded, code)
    if as_json:
        typer.echo(json.dumps(rule_to_dict(rule), indent=1))
    else:
        _print_explanation(rule)


def rule_to_dict(rule: Any) -> dict[str, Any]:
    """A rule as JSON-ready data, with the stage it is fixed in and the file it came from."""
    from paramdoctor.engine.stages import stage_name

    data = rule.model_dump(mode="json", by_alias=True)
    data["stage"] = stage_name(rule.category)
    data["path"] = rule.path
    return data


_OP_SIGNS = {"multiply": "×", "add": "+", "at_least": "≥ ", "at_most": "≤ ", "set": "= "}


def patch_summary(item: Any) -> str:
    """One patch item in a few characters: ``optimizer.lr ×0.1``, ``data.augment = true (only sgd)``."""
    if item.value_from is not None:
        operand = f"measured {item.value_from}"
    elif isinstance(item.value, bool) or item.value is None:
        operand = json.dumps(item.value)
    elif isinstance(item.value, float):
        operand = f"{item.value:g}"
    else:
        operand = str(item.value)
    text = f"`{item.key}` {_OP_SIGNS[item.op]}{operand}"
    notes = [f"{'/'.join(map(str, v)) if isinstance(v, list) else v}" for v in (item.only_if or {}).values()]
    if item.defer:
        notes.append("unless another finding changes it")
    return text + (f" ({', '.join(notes)})" if notes else "")


def markdown_table(loaded: list) -> str:
    """The rules as a Markdown table: code, slug, category, severity, title and every change it prescribes."""
    lines = ["| code | slug | category | severity | what it detects | what it prescribes |", "|---|---|---|---|---|---|"]
    for rule in loaded:
        patch = ", ".join(patch_summary(item) for item in rule.patch) or "nothing (a pipeline bug to fix by hand)"
        lines.append(f"| {rule.code} | `{rule.slug}` | {rule.category} | {rule.severity} | {rule.title} | {patch} |")
    return "\n".join(lines)


def _console():
    """A console for stdout: the terminal's width, or a wide fixed width when piped (nothing gets cropped)."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)
    return console


def _print_table(loaded: list) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"{len(loaded)} rules", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("code", "slug", "category", "severity"):
        table.add_column(column, no_wrap=True)
    table.add_column("title")
    for rule in loaded:
        table.add_row(rule.code, rule.slug, rule.category, rule.severity, rule.title)
    console = _console()
    console.print(table)
    console.print("Explain one with: paramdoctor rules CODE", markup=False)


def _print_explanation(rule: Any) -> None:
    from rich.text import Text

    from paramdoctor.engine.measure import SIGNALS
    from paramdoctor.engine.stages import stage_name

    console = _console()

    def heading(text: str) -> None:
        console.print()
        console.print(Text(text, style="bold"))

    def para(text: str, indent: int = 0) -> None:
        console.print(Text(" " * indent + " ".join(text.split())), markup=False)

    console.print(Text(f"{rule.code} ({rule.slug})", style="bold"))
    para(rule.title)
    para(
        f"category: {rule.category}   severity: {rule.severity}   stage: {stage_name(rule.category)}   "
        f"signal: {rule.signal} ({SIGNALS[rule.signal].summary})"
    )
    needs = [*rule.requires, *([" or ".join(rule.series)] if rule.series else [])]
    if needs:
        para(f"needs: {', '.join(needs)} (at least {rule.min_points} points)")
    scope = rule.applies_to
    if scope.status or scope.stop_reason or scope.pretrained is not None:
        parts = []
        if scope.status:
            parts.append(f"runs that are {' or '.join(scope.status)}")
        if scope.stop_reason:
            parts.append(f"stopped by {' or '.join(scope.stop_reason)}")
        if scope.pretrained:
            parts.append("started from pretrained weights")
        elif scope.pretrained is False:
            parts.append("trained from scratch")
        para(f"judges only: {', '.join(parts)}")
    for title, text in (
        ("What it detects", rule.doc.what),
        ("Why it matters", rule.doc.why),
        ("What to change", rule.doc.fix),
        ("Example", rule.doc.example),
    ):
        heading(title)
        para(text)
    heading("Fires when")
    for cond in rule.when:
        rhs = f"{cond.param} (= {rule.params[cond.param]!r})" if cond.param else repr(cond.value)
        missing = "  (passes when not measured)" if cond.if_missing == "pass" else ""
        para(f"{cond.field} {cond.op} {rhs}{missing}", indent=2)
    if rule.for_ is not None:
        window = rule.persistence(rule.params)
        via = f" (param {rule.for_.param})" if rule.for_.param else ""
        para(f"for at least {window} consecutive points{via}", indent=2)
    if rule.params:
        heading(f"Parameters (override with: paramdoctor diagnose RUN --set {rule.code}.NAME=VALUE, or in paramdoctor.yaml)")
        for name, value in rule.params.items():
            para(f"{name} = {value!r}", indent=2)
    heading("Patch (applied to the next config)")
    if not rule.patch:
        para("none: this rule changes no config key", indent=2)
    for item in rule.patch:
        clamp = []
        if item.min is not None:
            clamp.append(f"min {item.min:g}")
        if item.max is not None:
            clamp.append(f"max {item.max:g}")
        if item.fallback_key:
            clamp.append(f"from {item.fallback_key} when unset")
        if item.defer:
            clamp.append("unless another finding changes it")
        for key, wanted in (item.only_if or {}).items():
            clamp.append(f"only when {key} is {' or '.join(map(str, wanted)) if isinstance(wanted, list) else wanted}")
        extra = f" ({', '.join(clamp)})" if clamp else ""
        if item.value_from is not None:
            value = f"<measured {item.value_from}>"
        else:
            value = "null" if item.value is None else json.dumps(item.value)
        para(f"{item.key}: {item.op} {value}{extra} - {item.reason}", indent=2)
    if rule.path:
        console.print()
        para(f"defined in {rule.path}")
