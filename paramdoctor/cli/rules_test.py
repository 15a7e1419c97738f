"""``paramdoctor rules test [RULES_DIR] [SAMPLES_DIR]``: the rules' report card over runs with known answers.

Like ``promtool test rules`` and ``semgrep --test``: a table of precision,
recall and F1 per rule and overall, then every miss and every false alarm.
Exit 0 when every expectation holds, 1 when any is broken, 2 for input errors
(raised as ParamDoctorError; ``app.main`` prints the one line).

When SAMPLES_DIR holds a real corpus (``real/``, or SAMPLES_DIR is one: folders
with ``source.yaml`` and ``expect.yaml``), its category report card follows,
calibration and test apart (:mod:`paramdoctor.engine.real_corpus`). That card
is a measurement of how the rules do on other projects' logs, not a set of
expectations, so it never changes the exit code.

Reads only JSON, YAML and numpy/scipy signals: no torch, MLflow or matplotlib.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from paramdoctor.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from rich.table import Table

    from paramdoctor.engine.real_corpus import CategoryCard
    from paramdoctor.engine.report_card import Rates, ReportCard, RuleScore

SAMPLES_FOLDER = "sample_runs"
REAL_FOLDER = "real"


def default_samples_dir() -> Path:
    """``./sample_runs`` when it exists, else the repository's ``sample_runs``."""
    here = Path.cwd() / SAMPLES_FOLDER
    if here.is_dir():
        return here
    repo = Path(__file__).resolve().parents[2] / SAMPLES_FOLDER
    if repo.is_dir():
        return repo
    raise InputError(f"no {SAMPLES_FOLDER}/ here or in the paramdoctor checkout: pass SAMPLES_DIR")


def build_report_card(
    rules_dir: Path | None = None,
    samples_dir: Path | None = None,
    extra_rule_dirs: Iterable[Path] = (),
    set_params: Iterable[str] = (),
) -> "ReportCard":
    """Load the rules (``rules_dir`` or the built-in ones, plus ``extra_rule_dirs``) and samples, and score them."""
    from paramdoctor.engine.loader import builtin_rules_dir, load_rules
    from paramdoctor.engine.params import parse_param_overrides
    from paramdoctor.engine.report_card import ReportCard, load_samples, score

    rules_dir = Path(rules_dir) if rules_dir is not None else builtin_rules_dir()
    samples_dir = Path(samples_dir) if samples_dir is not None else default_samples_dir()
    if not rules_dir.is_dir():
        raise InputError(
            f"{rules_dir}: rules directory not found (pass a folder of *.yaml rule files, or omit it for the built-in rules)"
        )
    rules = load_rules(extra_dirs=[rules_dir, *extra_rule_dirs], include_builtin=False)
    if not rules:
        raise InputError(f"{rules_dir}: no rule files (*.yaml) to test")
    samples = load_samples(samples_dir)
    card = score(rules, samples, parse_param_overrides(set_params) or None)
    return ReportCard(
        rules=card.rules,
        samples=card.samples,
        misses=card.misses,
        false_alarms=card.false_alarms,
        extra={"rules_dir": str(rules_dir), "samples_dir": str(samples_dir)},
    )


def rules_test(
    dirs: list[str],
    *,
    extra_rule_dirs: Iterable[Path] = (),
    set_params: Iterable[str] = (),
    as_json: bool = False,
    console: "Console | None" = None,
    split: str | None = None,
) -> int:
    """The command: ``dirs`` are the optional RULES_DIR and SAMPLES_DIR positionals. Returns the exit code.

    ``split`` (calibration or test) shows only that part of the real corpus.
    """
    from paramdoctor.engine.real_corpus import SPLITS

    if split is not None and split not in SPLITS:
        raise InputError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if len(dirs) > 2:
        raise InputError(
            f"rules test takes at most RULES_DIR and SAMPLES_DIR, got {len(dirs)} paths: {' '.join(dirs)}"
        )
    rules_dir = Path(dirs[0]) if dirs else None
    samples_dir = Path(dirs[1]) if len(dirs) > 1 else default_samples_dir()
    real_dir = real_corpus_dir(samples_dir)
    card = None
    if real_dir != samples_dir:
        card = build_report_card(rules_dir, samples_dir, extra_rule_dirs, set_params)
    real = build_real_cards(rules_dir, real_dir, extra_rule_dirs, set_params) if real_dir is not None else {}
    if split is not None:
        real = {k: v for k, v in real.items() if k == split}
    if as_json:
        import typer

        payload = card.to_dict() if card is not None else {"ok": True}
        if real:
            payload["real"] = {split: c.to_dict() for split, c in real.items()}
        typer.echo(json.dumps(payload, indent=1))
    else:
        console = console or _console()
        if card is not None:
            render_report_card(card, console)
        for real_card in real.values():
            console.print()
            render_category_card(real_card, console)
    return card.exit_code if card is not None else 0


def real_corpus_dir(samples_dir: Path) -> Path | None:
    """``samples_dir`` itself when it is a real corpus, its ``real/`` folder when that is one, else None."""
    from paramdoctor.engine.real_corpus import is_real_sample

    for candidate in (samples_dir, samples_dir / REAL_FOLDER):
        if candidate.is_dir() and any(is_real_sample(p) for p in candidate.iterdir() if p.is_dir()):
            return candidate
    return None


def build_real_cards(
    rules_dir: Path | None,
    real_dir: Path,
    extra_rule_dirs: Iterable[Path] = (),
    set_params: Iterable[str] = (),
) -> "dict[str, CategoryCard]":
    """The category report card of the rules on the real corpus: calibration and test apart."""
    from paramdoctor.engine.loader import builtin_rules_dir, load_rules
    from paramdoctor.engine.params import parse_param_overrides
    from paramdoctor.engine.real_corpus import SPLITS, doctor, load_real_samples, score_real

    rules_dir = Path(rules_dir) if rules_dir is not None else builtin_rules_dir()
    rules = load_rules(extra_dirs=[rules_dir, *extra_rule_dirs], include_builtin=False)
    samples = load_real_samples(real_dir)
    predict = doctor(rules, parse_param_overrides(set_params) or None)
    cards = {}
    for split in SPLITS:
        card = score_real(samples, predict, split=split)
        cards[split] = type(card)(card.split, card.predictor, card.categories, card.results, {"real_dir": str(real_dir)})
    return cards


# --- rendering --------------------------------------------------------------------


def report_card_json(card: "ReportCard") -> str:
    return json.dumps(card.to_dict(), indent=1)


def render_report_card(card: "ReportCard", console: "Console") -> None:
    """The table of scores, then each miss and false alarm, then one verdict line."""
    from rich.text import Text

    table = _score_table(
        f"{len(card.rules)} rules on {len(card.samples)} samples",
        [("rule", "overall"), ("slug", f"macro-F1 over {len(card.scored_rules)} rules: {_rate(card.macro_f1)}")],
        card.micro,
    )
    for rule in card.rules:
        table.add_row(*_row(rule), style=_style(rule))
    console.print(table)

    if card.misses:
        console.print(Text(f"{len(card.misses)} missed:", style="bold red"))
        for miss in card.misses:
            console.print(Text(f"  {miss.sentence()}"), soft_wrap=True)
    if card.false_alarms:
        console.print(Text(f"{_count(len(card.false_alarms), 'false alarm')}:", style="bold red"))
        for alarm in card.false_alarms:
            console.print(Text(f"  {alarm.sentence()}"), soft_wrap=True)
    silent = [r.code for r in card.rules if r.fired == 0]
    if silent:
        console.print(Text(f"never fired on any sample: {', '.join(silent)}", style="yellow"))
    broken = len(card.misses) + len(card.false_alarms)
    if broken:
        failed = len({m.sample for m in card.misses} | {f.sample for f in card.false_alarms})
        console.print(
            Text(f"FAILED: {_count(broken, 'expectation')} broken on {_count(failed, 'sample')}", style="bold red")
        )
    else:
        console.print(Text(f"OK: every expectation holds on {len(card.samples)} samples", style="bold green"))


def render_category_card(card: "CategoryCard", console: "Console") -> None:
    """The real corpus: scores per category for one split, then each sample the rules got wrong."""
    from rich.text import Text

    table = _score_table(
        f"real corpus, {card.split} split: {len(card.results)} logs ({card.healthy} healthy), scored by category",
        [("category", f"macro-F1 over {len(card.scored)}: {_rate(card.macro_f1)}")],
        card.micro,
    )
    for c in card.categories:
        if not (c.expected or c.fp or c.also):
            continue
        style = "red" if c.fp or c.fn else ""
        table.add_row(c.category, *_counts(c), style=style)
    console.print(table)
    console.print(
        Text(
            f"healthy logs with a false alarm: {card.healthy_alarms} of {card.healthy}; "
            f"logs that could not be read: {len(card.errors)}",
            style="bold",
        )
    )
    for r in card.results:
        if r.error:
            console.print(Text(f"  {r.name}: input error: {r.error}", style="red"), soft_wrap=True)
        elif not r.ok:
            parts = []
            if r.missed:
                parts.append(f"missed {', '.join(r.missed)}")
            if r.false_alarms:
                parts.append(f"false alarm {', '.join(r.false_alarms)}")
            console.print(Text(f"  {r.name}: {'; '.join(parts)}"), soft_wrap=True)


def _score_table(title: str, leading: list[tuple[str, str]], micro: "Rates") -> "Table":
    """A scores table: the ``leading`` (header, footer) columns, then counts and rates, totals in the footer."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_footer=True)
    for header, footer in leading:
        table.add_column(header, footer=footer, justify="left", no_wrap=True)
    for header, footer in (
        ("expected", str(micro.expected)),
        ("TP", str(micro.tp)),
        ("FP", str(micro.fp)),
        ("FN", str(micro.fn)),
        ("precision", _rate(micro.precision)),
        ("recall", _rate(micro.recall)),
        ("F1", _rate(micro.f1)),
    ):
        table.add_column(header, footer=footer, justify="right", no_wrap=True)
    return table


def _row(rule: "RuleScore") -> tuple[str, ...]:
    return (rule.code, rule.slug, *_counts(rule))


def _counts(score: "Rates") -> tuple[str, ...]:
    return (
        str(score.expected),
        str(score.tp),
        str(score.fp),
        str(score.fn),
        _rate(score.precision),
        _rate(score.recall),
        _rate(score.f1),
    )


def _style(rule: "RuleScore") -> str:
    if rule.fp or rule.fn:
        return "red"
    return "" if rule.expected else "dim"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _console() -> "Console":
    from paramdoctor.cli.rules_cmd import _console

    return _console()
