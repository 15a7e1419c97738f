"""The real corpus: other projects' training logs, labelled by category, split once into calibration and test.

``sample_runs/real/<name>/`` holds a log as its tool wrote it, ``source.yaml``
(where it came from) and ``expect.yaml`` (the categories that clearly hold,
``labels``; the defensible borderline ones, ``may``; a one-line rationale from
the numbers; the split). ``sample_runs/real/LABELING.md`` says how logs get in
and how they are labelled.

Unlike the digits corpus, whose runs were designed to trip particular rules,
these logs are scored by **category** (the finding vocabulary every rule
declares): a label is found when any rule of that category fires. Per
category: found (true positive), missed, or named where it does not hold
(false alarm; categories in ``may`` count neither way). A sample whose log
cannot be read is an input error, reported apart and counted as a miss of
each of its labels.

The split is a seeded random draw made from the sample's name alone
(:func:`split_of`), so it was fixed when the sample was named; thresholds are
tuned on ``calibration`` only, and ``test`` is how users learn what to expect.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paramdoctor.diagnosis import CATEGORIES
from paramdoctor.engine.report_card import Rates
from paramdoctor.engine.schema import Category
from paramdoctor.errors import ConfigError, InputError
from paramdoctor.record import RunRecord

SPLIT_SALT = "paramdoctor-real-v1:"
TEST_FRACTION = 0.30
SPLITS = ("calibration", "test")
EXPECT_FILE = "expect.yaml"
SOURCE_FILE = "source.yaml"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def split_of(name: str) -> str:
    """``"test"`` for about 30% of names, ``"calibration"`` for the rest: fixed by the name, never by hand."""
    digest = hashlib.sha256((SPLIT_SALT + name).encode("utf-8")).hexdigest()
    return "test" if int(digest[:8], 16) / 2**32 < TEST_FRACTION else "calibration"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RealExpectation(_Strict):
    """``expect.yaml`` of a real sample."""

    labels: list[Category]  # type: ignore[valid-type]
    may: list[Category] = []  # type: ignore[valid-type]
    rationale: str = Field(min_length=1)
    split: Literal["calibration", "test"]


class Provenance(_Strict):
    """``source.yaml``: where the log came from and which file in the folder holds the curves."""

    repository: str = Field(pattern=r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$")
    path: str = Field(min_length=1)
    commit: str = Field(pattern=COMMIT_RE.pattern)
    url: str = Field(min_length=1)
    format: str = Field(min_length=1)
    log: str = Field(min_length=1)
    task: str = ""
    note: str = ""
    map: dict[str, str] = {}  # the --map KEY=COLUMN a user passes for a log whose column names say nothing


@dataclass(frozen=True)
class RealSample:
    """One labelled log; ``record`` is None when the log could not be read (``error`` says why)."""

    name: str
    expect: RealExpectation
    source: Provenance
    path: Path
    record: RunRecord | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return not self.expect.labels


# --- loading ----------------------------------------------------------------------


def is_real_sample(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / EXPECT_FILE).is_file()


def load_real_samples(directory: str | Path, *, read_logs: bool = True) -> list[RealSample]:
    """Every sample folder under ``directory`` (one holding source.yaml and expect.yaml), sorted by name.

    A broken ``expect.yaml`` or ``source.yaml`` raises InputError (the corpus
    itself is wrong); a log the importers cannot read is kept as the sample's
    ``error`` (that is a measurement: the doctor failed on a real file).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: real corpus folder not found")
    samples = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_real_sample(folder):
            samples.append(load_real_sample(folder, read_log=read_logs))
    return samples


def load_real_sample(folder: Path, *, read_log: bool = True) -> RealSample:
    name = folder.name
    if not NAME_RE.match(name):
        raise InputError(f"{folder}: sample name must be lowercase letters, digits and '-', at most 80 characters")
    expect = _read_model(folder / EXPECT_FILE, RealExpectation)
    source = _read_model(folder / SOURCE_FILE, Provenance)
    if expect.split != split_of(name):
        raise InputError(
            f"{folder / EXPECT_FILE}: split is {expect.split!r} but the frozen split of {name!r} is {split_of(name)!r} "
            "(the split is drawn from the name; it is never chosen by hand)"
        )
    both = set(expect.labels) & set(expect.may)
    if both:
        raise InputError(f"{folder / EXPECT_FILE}: {', '.join(sorted(both))} is in both labels and may")
    log = folder / source.log
    if not log.exists():
        raise InputError(f"{folder / SOURCE_FILE}: log {source.log!r} is not in the sample folder")
    record, error = None, None
    if read_log:
        from paramdoctor.importers import load_foreign

        try:
            record = load_foreign(log, mapping=dict(source.map) or None)
        except InputError as exc:
            error = str(exc)
    return RealSample(name=name, expect=expect, source=source, path=folder, record=record, error=error)


def _read_model(path: Path, model: type[BaseModel]) -> Any:
    from paramdoctor.config.loading import load_yaml_text, read_text_file

    try:
        data = load_yaml_text(read_text_file(path, "file", InputError), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{path}: {loc}: {err['msg']}") from None


# --- scoring (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class CategoryScore(Rates):
    category: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    also: int = 0  # named where the label was only "may"

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, **self.rates(), "also": self.also}


@dataclass(frozen=True)
class RealResult:
    """What was said about one sample next to what holds."""

    name: str
    labels: tuple[str, ...]
    may: tuple[str, ...]
    said: tuple[str, ...]
    error: str | None = None

    @property
    def missed(self) -> tuple[str, ...]:
        return tuple(c for c in self.labels if c not in self.said)

    @property
    def false_alarms(self) -> tuple[str, ...]:
        return tuple(c for c in self.said if c not in self.labels and c not in self.may)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missed and not self.false_alarms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "may": list(self.may),
            "said": list(self.said),
            "missed": list(self.missed),
            "false_alarms": list(self.false_alarms),
            "error": self.error,
        }


@dataclass(frozen=True)
class CategoryCard:
    """Per-category scores of one predictor on one split of the real corpus."""

    split: str
    predictor: str
    categories: tuple[CategoryScore, ...]
    results: tuple[RealResult, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> tuple[CategoryScore, ...]:
        """Categories with at least one label in this split: the ones macro-F1 averages over."""
        return tuple(c for c in self.categories if c.expected > 0)

    @property
    def macro_f1(self) -> float | None:
        scored = self.scored
        return sum(c.f1 or 0.0 for c in scored) / len(scored) if scored else None

    @property
    def micro(self) -> CategoryScore:
        return CategoryScore(
            "all",
            tp=sum(c.tp for c in self.categories),
            fp=sum(c.fp for c in self.categories),
            fn=sum(c.fn for c in self.categories),
            also=sum(c.also for c in self.categories),
        )

    @property
    def healthy(self) -> int:
        return sum(1 for r in self.results if not r.labels)

    @property
    def healthy_alarms(self) -> int:
        """Healthy samples on which anything outside ``may`` was named."""
        return sum(1 for r in self.results if not r.labels and r.false_alarms)

    @property
    def errors(self) -> tuple[RealResult, ...]:
        return tuple(r for r in self.results if r.error is not None)

    def to_dict(self) -> dict[str, Any]:
        micro = self.micro
        return {
            **self.extra,
            "split": self.split,
            "predictor": self.predictor,
            "samples": len(self.results),
            "healthy": self.healthy,
            "healthy_with_false_alarm": self.healthy_alarms,
            "input_errors": len(self.errors),
            "overall": {
                "macro_f1": self.macro_f1,
                "categories_scored": len(self.scored),
                "tp": micro.tp,
                "fp": micro.fp,
                "fn": micro.fn,
                "precision": micro.precision,
                "recall": micro.recall,
                "f1": micro.f1,
            },
            "categories": [c.to_dict() for c in self.categories],
            "per_sample": [r.to_dict() for r in self.results],
        }


Predictor = Callable[[RunRecord], Iterable[str]]


def score_real(samples: Iterable[RealSample], predict: Predictor, *, split: str = "all", predictor: str = "paramdoctor") -> CategoryCard:
    """Score ``predict`` (a record -> the categories it names) on the samples of ``split`` ("all" for every one)."""
    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "also": 0} for c in CATEGORIES}
    results = []
    for sample in sorted(samples, key=lambda s: s.name):
        if split != "all" and sample.expect.split != split:
            continue
        said: set[str] = set()
        if sample.record is not None:
            said = {c for c in predict(sample.record) if c in counts}
        labels, may = set(sample.expect.labels), set(sample.expect.may)
        for category in CATEGORIES:
            if category in labels:
                counts[category]["tp" if category in said else "fn"] += 1
            elif category in said:
                counts[category]["also" if category in may else "fp"] += 1
        results.append(
            RealResult(
                sample.name,
                tuple(sorted(labels)),
                tuple(sorted(may)),
                tuple(sorted(said)),
                sample.error,
            )
        )
    return CategoryCard(
        split=split,
        predictor=predictor,
        categories=tuple(CategoryScore(c, **counts[c]) for c in CATEGORIES),
        results=tuple(results),
    )


def doctor(rules: Iterable[Any], params: Any = None) -> Predictor:
    """The doctor as a predictor: the categories of every rule that fires, on every evaluation set."""
    from paramdoctor.engine.eval_sets import views
    from paramdoctor.engine.evaluate import evaluate

    rules = list(rules)

    def predict(record: RunRecord) -> set[str]:
        said: set[str] = set()
        for _, view in views(record):
            said |= {v.rule.category for v in evaluate(view, rules, params) if v.finding is not None}
        return said

    return predict

