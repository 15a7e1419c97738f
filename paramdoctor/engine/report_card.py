"""The rules' report card: how well a set of rules judges a corpus of runs with known answers.

Like ``promtool test rules`` or ``semgrep --test``: every sample is a run
(``run.json``, a :class:`~paramdoctor.record.RunRecord` export) next to an
``expect.yaml`` that says which rules must fire on it (``fire``) and which may
(``may_fire``: co-firing symptoms, counted neither way). Every other rule must
stay silent. Scoring is per rule over all samples:

* expected and fired: a true positive;
* expected and silent (or skipped, which is reported with its reason): a miss;
* not expected, not allowed, and fired: a false alarm.

Loading (:func:`load_samples`) reads files; scoring (:func:`score`) is pure
and takes records and expectations already in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from paramdoctor.config.loading import load_yaml_text, read_text_file
from paramdoctor.engine.evaluate import evaluate
from paramdoctor.engine.loader import find_rule
from paramdoctor.engine.schema import Rule
from paramdoctor.errors import ConfigError, InputError, RuleError
from paramdoctor.record import RunRecord

EXPECT_FILE = "expect.yaml"
RUN_FILE = "run.json"


class Expectation(BaseModel):
    """What a doctor must say about one sample run (``expect.yaml``); unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    what: str = ""
    fire: list[str]  # rule codes or slugs that must fire ([] on healthy runs)
    may_fire: list[str] = []  # rule codes or slugs that may fire too
    run_id: str | None = None  # informational: the MLflow run the sample came from


@dataclass(frozen=True)
class Sample:
    """One run with its expectation; ``path`` is the sample's folder (None for samples built in memory)."""

    name: str
    record: RunRecord
    expect: Expectation
    path: Path | None = None


@dataclass(frozen=True)
class Miss:
    """A rule that should have fired on a sample and did not; ``reason`` says why when the rule was skipped."""

    sample: str
    code: str
    slug: str
    reason: str | None = None

    def sentence(self) -> str:
        return f"{self.code} did not fire on {self.sample}" + (f" (skipped: {self.reason})" if self.reason else "")


@dataclass(frozen=True)
class FalseAlarm:
    """A rule that fired on a sample where it must stay silent, with the finding's evidence."""

    sample: str
    code: str
    slug: str
    evidence: str

    def sentence(self) -> str:
        return f"{self.code} fired on {self.sample}: {self.evidence}"


class Rates:
    """Precision, recall and F1 from ``tp``/``fp``/``fn`` counts (None where a denominator is zero)."""

    tp: int
    fp: int
    fn: int

    @property
    def expected(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def rates(self) -> dict[str, Any]:
        """The counts and rates as JSON-ready data."""
        return {
            "expected": self.expected,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class RuleScore(Rates):
    """One rule's counts over the corpus; rates are None where their denominator is zero."""

    code: str
    slug: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    also_fired: int = 0  # firings on samples that list it in may_fire (not counted)

    @property
    def fired(self) -> int:
        return self.tp + self.fp + self.also_fired

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "slug": self.slug, **self.rates(), "also_fired": self.also_fired}


@dataclass(frozen=True)
class SampleResult:
    """What the rules said about one sample, next to what they had to say (all as rule codes)."""

    name: str
    fire: tuple[str, ...]
    may_fire: tuple[str, ...]
    fired: tuple[str, ...]
    misses: tuple[Miss, ...] = ()
    false_alarms: tuple[FalseAlarm, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.misses and not self.false_alarms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "fire": list(self.fire),
            "may_fire": list(self.may_fire),
            "fired": list(self.fired),
        }


@dataclass(frozen=True)
class ReportCard:
    """Per-rule scores, per-sample results, and every broken expectation."""

    rules: tuple[RuleScore, ...]
    samples: tuple[SampleResult, ...]
    misses: tuple[Miss, ...] = ()
    false_alarms: tuple[FalseAlarm, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # where the rules and samples came from, for reports

    @property
    def ok(self) -> bool:
        """True when every expectation holds."""
        return not self.misses and not self.false_alarms

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def scored_rules(self) -> tuple[RuleScore, ...]:
        """The rules with at least one expected firing: the ones macro-F1 averages over."""
        return tuple(r for r in self.rules if r.expected > 0)

    @property
    def macro_f1(self) -> float | None:
        scored = self.scored_rules
        if not scored:
            return None
        return sum(r.f1 or 0.0 for r in scored) / len(scored)

    @property
    def micro(self) -> RuleScore:
        """Totals over every rule and sample, as one pseudo-rule."""
        return RuleScore(
            code="all",
            slug="all",
            tp=sum(r.tp for r in self.rules),
            fp=sum(r.fp for r in self.rules),
            fn=sum(r.fn for r in self.rules),
            also_fired=sum(r.also_fired for r in self.rules),
        )

    def to_dict(self) -> dict[str, Any]:
        micro = self.micro
        return {
            **self.extra,
            "ok": self.ok,
            "samples": len(self.samples),
            "overall": {
                "macro_f1": self.macro_f1,
                "rules_scored": len(self.scored_rules),
                "tp": micro.tp,
                "fp": micro.fp,
                "fn": micro.fn,
                "precision": micro.precision,
                "recall": micro.recall,
                "f1": micro.f1,
            },
            "rules": [r.to_dict() for r in self.rules],
            "misses": [{"sample": m.sample, "code": m.code, "slug": m.slug, "reason": m.reason} for m in self.misses],
            "false_alarms": [
                {"sample": f.sample, "code": f.code, "slug": f.slug, "evidence": f.evidence} for f in self.false_alarms
            ],
            "per_sample": [s.to_dict() for s in self.samples],
        }


# --- scoring (pure) ---------------------------------------------------------------


def score(
    rules: Iterable[Rule],
    samples: Iterable[Sample],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportCard:
    """Judge every sample with ``rules`` and compare with its expectation.

    ``params`` overrides rule parameters as in :func:`paramdoctor.engine.diagnose`.
    Expectations name rules by code or slug; a name that is none of ``rules``
    raises InputError (a typo must not pass as "stays silent").
    """
    rules = sorted(rules, key=lambda r: r.code)
    slugs = {r.code: r.slug for r in rules}
    counts = {r.code: {"tp": 0, "fp": 0, "fn": 0, "also_fired": 0} for r in rules}
    results: list[SampleResult] = []
    all_misses: list[Miss] = []
    all_alarms: list[FalseAlarm] = []
    for sample in sorted(samples, key=lambda s: s.name):
        fire, may_fire = resolve_expectation(rules, sample)
        verdicts = {v.rule.code: v for v in evaluate(sample.record, rules, params)}
        fired = tuple(sorted(code for code, v in verdicts.items() if v.finding is not None))
        misses, alarms = [], []
        for code in sorted(slugs):
            verdict = verdicts[code]
            if code in fire:
                if verdict.finding is not None:
                    counts[code]["tp"] += 1
                else:
                    counts[code]["fn"] += 1
                    reason = verdict.skipped.reason if verdict.skipped is not None else None
                    misses.append(Miss(sample.name, code, slugs[code], reason))
            elif verdict.finding is not None:
                if code in may_fire:
                    counts[code]["also_fired"] += 1
                else:
                    counts[code]["fp"] += 1
                    alarms.append(FalseAlarm(sample.name, code, slugs[code], verdict.finding.evidence.message))
        results.append(
            SampleResult(sample.name, tuple(sorted(fire)), tuple(sorted(may_fire)), fired, tuple(misses), tuple(alarms))
        )
        all_misses.extend(misses)
        all_alarms.extend(alarms)
    return ReportCard(
        rules=tuple(RuleScore(code, slugs[code], **counts[code]) for code in sorted(slugs)),
        samples=tuple(results),
        misses=tuple(all_misses),
        false_alarms=tuple(all_alarms),
    )


def resolve_expectation(rules: list[Rule], sample: Sample) -> tuple[set[str], set[str]]:
    """The sample's ``fire`` and ``may_fire`` as rule codes; unknown names and overlaps raise InputError."""
    where = str(sample.path / EXPECT_FILE) if sample.path is not None else f"sample {sample.name}"
    resolved: dict[str, set[str]] = {}
    for key in ("fire", "may_fire"):
        resolved[key] = set()
        for index, name in enumerate(getattr(sample.expect, key)):
            try:
                resolved[key].add(find_rule(rules, name).code)
            except RuleError as exc:
                detail = str(exc).split("; ")[0]
                raise InputError(
                    f"{where}: {key}[{index}]: {detail}; name a rule under test by code or slug "
                    "(`paramdoctor rules` lists them)"
                ) from None
    both = resolved["fire"] & resolved["may_fire"]
    if both:
        raise InputError(f"{where}: may_fire: {', '.join(sorted(both))} is also in fire; list each rule in one of them")
    return resolved["fire"], resolved["may_fire"]


# --- loading (reads files) --------------------------------------------------------


def load_expectation(path: str | Path) -> Expectation:
    """Read and validate one ``expect.yaml``; every problem is one InputError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: cannot read expectation file (no such file)")
    text = read_text_file(path, "expectation file", InputError)  # UTF-8, size-capped
    try:
        data = load_yaml_text(text, str(path))
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise InputError(f"{path}: expect.yaml must be a mapping with at least 'fire: [CODE, ...]', got {kind}")
    try:
        return Expectation.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {_describe(exc)}") from None


def load_sample(folder: str | Path) -> Sample:
    """One sample folder: ``run.json`` and ``expect.yaml``."""
    folder = Path(folder)
    for name in (RUN_FILE, EXPECT_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: sample has no {name} (a sample folder holds run.json and expect.yaml)")
    expect = load_expectation(folder / EXPECT_FILE)
    return Sample(name=folder.name, record=RunRecord.load(folder / RUN_FILE), expect=expect, path=folder)


def load_samples(directory: str | Path) -> list[Sample]:
    """Every sample folder under ``directory`` (one holding run.json or expect.yaml), sorted by name.

    Hidden folders (``.store``) and folders with neither file are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: samples directory not found (pass a folder of <sample>/run.json + expect.yaml)")
    folders = [
        d
        for d in sorted(directory.iterdir())
        if d.is_dir() and not d.name.startswith(".") and ((d / RUN_FILE).exists() or (d / EXPECT_FILE).exists())
    ]
    if not folders:
        raise InputError(f"{directory}: no samples found (expected sub-folders holding run.json and expect.yaml)")
    return [load_sample(d) for d in folders]


def _describe(exc: ValidationError) -> str:
    err = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]).replace(".[", "[")
    allowed = ", ".join(Expectation.model_fields)
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}; allowed: {allowed}"
    if err["type"] == "missing":
        return f"missing required key {loc!r} (write 'fire: []' for a run on which every rule must stay silent)"
    return f"{loc}: {err['msg']}, got {err.get('input')!r}"


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
