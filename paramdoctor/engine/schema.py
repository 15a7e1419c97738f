"""The schema of a rule file (``rules/*.yaml``): typed, closed, checked on load.

Every level forbids unknown keys, so a typo such as ``severty:`` fails loudly.
Beyond types, a rule is checked against the signal registry and the config
schema: the signal must exist, every condition must name a field that signal
measures, every ``param:`` must be declared under ``params:``, every evidence
placeholder must be measurable, and every patch key must be a TrainConfig key.
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from paramdoctor.diagnosis import CATEGORIES, SEVERITIES
from paramdoctor.keys import RUN_STATES

Category = Literal[CATEGORIES]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
RunState = Literal[RUN_STATES]  # type: ignore[valid-type]
Scalar = Union[bool, int, float, str, None]
ParamValue = Union[bool, int, float, str]

CODE_RE = re.compile(r"^[A-Z]{1,8}[0-9]{1,5}$")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
LR_KEYS = ("optimizer.lr", "optimizer.backbone_lr")
# Fields every measurement may be referred to by in an evidence template, besides its own.
TEMPLATE_BUILTINS = ("unit", "code", "slug")


def is_count(default: Any) -> bool:
    """Whether a parameter is a count: its declared default is a whole number (``persistence: 3``)."""
    return isinstance(default, int) and not isinstance(default, bool)


def value_problem(value: Any, *, count: bool = False) -> str | None:
    """Why a rule parameter or threshold value is refused, or None when it is fine.

    The generic rule, since parameters declare no range: a number must be
    finite (NaN compares false with everything and would silently switch a
    condition off; infinity makes it vacuous), and a count (a parameter whose
    default is a whole number: persistence windows, minimum numbers of points,
    spikes, swings, epochs) must be an integer of at least 1. Other numbers may
    be zero or negative (a log10 change of -3 is a real threshold).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if count and value < 1:
        return f"counts points, epochs or events and must be a whole number >= 1, got {value!r}"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """``{field: rise, op: ">=", param: min_rise}``: a measured field compared with a param or a literal ``value``.

    ``if_missing`` decides when the field was not measured (None, e.g. no
    telemetry): ``fail`` (the default) keeps the rule silent, ``pass`` lets the
    other conditions decide.
    """

    field: str
    op: Literal[">=", ">", "<=", "<", "==", "!="]
    param: str | None = None
    value: Scalar = None
    if_missing: Literal["fail", "pass"] = "fail"

    @model_validator(mode="after")
    def _one_operand(self) -> "Condition":
        given_value = "value" in self.model_fields_set
        if (self.param is None) == (not given_value):
            raise ValueError(f"condition on {self.field!r} needs exactly one of 'param' or 'value'")
        problem = value_problem(self.value)
        if problem:
            raise ValueError(f"condition on {self.field!r}: value {problem}")
        return self


class Persistence(_Strict):
    """``for:``: how many consecutive points the symptom must have held (the measurement's ``held`` field)."""

    param: str | None = None
    points: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> "Persistence":
        if (self.param is None) == (self.points is None):
            raise ValueError("'for' needs exactly one of 'param' or 'points'")
        return self


class PatchItem(_Strict):
    """One config change: ``set``, ``multiply``, ``add``, ``at_least`` or ``at_most``, clamped to [min, max].

    A key that is null (unset) is left alone by ``multiply``, ``add`` and
    ``at_least`` unless ``fallback_key`` names a key to start from (e.g.
    ``optimizer.backbone_lr`` null means "same as ``optimizer.lr``");
    ``at_most`` on a null key (no limit) sets the value.

    ``value_from`` takes the operand from the finding instead of ``value``: a
    field the rule's signal measured (e.g. the factor that brings a measured
    quantity back into its healthy band). ``only_if`` applies the item only
    when the starting config matches ({config key: value or [values]}), e.g.
    a weight decay that depends on ``optimizer.name``. Several items of one
    rule on the same key compose in order (``multiply 2`` then ``at_least 10``).
    ``defer`` marks a companion of the rule's main fix (the LR scaling that
    goes with a larger batch): it is applied after every other finding's items,
    and only where none of them changed the key.
    """

    key: str
    op: Literal["set", "multiply", "add", "at_least", "at_most"]
    value: Scalar = None
    value_from: str | None = None
    min: float | None = None
    max: float | None = None
    fallback_key: str | None = None
    only_if: dict[str, Union[Scalar, list[Scalar]]] | None = None
    defer: bool = False
    reason: str = Field(min_length=1)

    @field_validator("key", "fallback_key")
    @classmethod
    def _known_key(cls, key: str | None) -> str | None:
        if key is None:
            return key
        from paramdoctor.config.loading import known_keys, suggest

        keys = known_keys()
        if key not in keys:
            raise ValueError(f"unknown config key {key!r}{suggest(key, keys)}")
        return key

    @model_validator(mode="after")
    def _numeric(self) -> "PatchItem":
        given_value = "value" in self.model_fields_set
        if given_value == (self.value_from is not None):
            raise ValueError(f"patch on {self.key} needs exactly one of 'value' or 'value_from'")
        if self.value_from is not None and self.op == "set":
            raise ValueError(f"patch on {self.key}: op 'set' takes a literal 'value', not 'value_from'")
        numeric = self.op in ("multiply", "add", "at_least", "at_most")
        if numeric and self.value_from is None and (isinstance(self.value, bool) or not isinstance(self.value, (int, float))):
            raise ValueError(f"op {self.op!r} on {self.key} needs a numeric value, got {self.value!r}")
        for name in ("value", "min", "max"):
            problem = value_problem(getattr(self, name))
            if problem:
                raise ValueError(f"patch on {self.key}: {name} {problem}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"patch on {self.key}: min {self.min} is above max {self.max}")
        if self.only_if:
            from paramdoctor.config.loading import known_keys, suggest

            keys = known_keys()
            for key in self.only_if:
                if key not in keys:
                    raise ValueError(f"patch on {self.key}: only_if names unknown config key {key!r}{suggest(key, keys)}")
        return self

    def applies(self, config: Mapping[str, Any]) -> bool:
        """Whether ``only_if`` holds for the flat starting ``config`` (always, without one)."""
        for key, wanted in (self.only_if or {}).items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if config.get(key) not in allowed:
                return False
        return True


def _may_raise(item: "PatchItem") -> bool:
    """Whether a patch item can raise its key: a factor above 1, a positive step, a floor, or a measured operand."""
    if item.op == "at_least" or item.value_from is not None and item.op in ("multiply", "add"):
        return True
    if isinstance(item.value, bool) or not isinstance(item.value, (int, float)):
        return False
    return (item.op == "multiply" and item.value > 1) or (item.op == "add" and item.value > 0)


class Doc(_Strict):
    """What ``paramdoctor rules CODE`` prints: ruff's outline."""

    what: str = Field(min_length=1)
    why: str = Field(min_length=1)
    fix: str = Field(min_length=1)
    example: str = Field(min_length=1)


class AppliesTo(_Strict):
    """Which runs the rule judges; the others get a Skipped with the reason.

    ``status``: run states judged (e.g. not RUNNING for "ended too early").
    ``stop_reason``: judged only when the run's recorded stop reason is one of
    these (runs without a recorded stop reason are judged).
    ``pretrained``: true judges only runs that started from pretrained weights,
    false only runs trained from scratch.
    """

    status: list[RunState] | None = None  # type: ignore[valid-type]
    stop_reason: list[str] | None = None
    pretrained: bool | None = None


class Rule(_Strict):
    """One rule file.

    ``params`` declares the parameters a user may override, with their defaults;
    a default's type is the parameter's type, and a whole-number default makes
    it a count (see :func:`value_problem`: finite always, counts >= 1).
    ``requires`` lists the series the rule needs (``*`` matches a layer group);
    ``series`` the input series the signal reads, first recorded one wins;
    ``min_points`` applies to the primary series: the chosen ``series``, else
    the first plain key of ``requires``.
    """

    code: str
    slug: str
    title: str = Field(min_length=1)
    category: Category  # type: ignore[valid-type]
    severity: Severity  # type: ignore[valid-type]
    requires: list[str] = Field(default_factory=list)
    series: list[str] = Field(default_factory=list)
    min_points: int = Field(1, ge=1)
    signal: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    when: list[Condition] = Field(min_length=1)
    for_: Persistence | None = Field(None, alias="for")
    applies_to: AppliesTo = AppliesTo()
    evidence: str = Field(min_length=1)
    doc: Doc
    patch: list[PatchItem] = Field(default_factory=list)

    _path: str | None = PrivateAttr(None)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def path(self) -> str | None:
        """The file the rule was loaded from (None for rules built in code)."""
        return self._path

    @field_validator("code")
    @classmethod
    def _code(cls, code: str) -> str:
        if not CODE_RE.match(code):
            raise ValueError(f"rule code must look like PD301 (capital letters then digits), got {code!r}")
        return code

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str) -> str:
        if not SLUG_RE.match(slug):
            raise ValueError(f"slug must be lowercase words joined by '-', e.g. val-loss-turns-up, got {slug!r}")
        return slug

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        for name, value in params.items():
            problem = value_problem(value, count=is_count(value))
            if problem and is_count(value):
                problem += f" (a whole-number default makes a parameter a count; write {float(value)} for a threshold)"
            if problem:
                raise ValueError(f"params.{name}: {problem}")
        return params

    @field_validator("series", "requires", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("signal")
    @classmethod
    def _signal(cls, name: str) -> str:
        from paramdoctor.config.loading import suggest
        from paramdoctor.engine.measure import SIGNALS

        if name not in SIGNALS:
            raise ValueError(f"unknown signal {name!r}{suggest(name, SIGNALS)}; known: {', '.join(sorted(SIGNALS))}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> "Rule":
        from paramdoctor.config.loading import suggest
        from paramdoctor.engine.measure import SIGNALS
        from paramdoctor.engine.template import check_template

        spec = SIGNALS[self.signal]
        for need in spec.needs:
            if not any(fnmatch.fnmatchcase(need, r) or r == need for r in self.requires):
                raise ValueError(f"requires: signal {self.signal} reads {need}; list it under requires")
        if spec.inputs and not self.series:
            raise ValueError(f"series: signal {self.signal} needs an input series, one or more of {', '.join(spec.inputs)}")
        if not spec.inputs and self.series:
            raise ValueError(f"series: signal {self.signal} takes no input series")
        for s in self.series:
            if s not in spec.inputs:
                raise ValueError(f"series: signal {self.signal} cannot read {s!r}; it reads one of {', '.join(spec.inputs)}")
        for i, cond in enumerate(self.when):
            if cond.field not in spec.fields:
                raise ValueError(
                    f"when[{i}].field: signal {self.signal} measures no {cond.field!r}{suggest(cond.field, spec.fields)}; "
                    f"it measures {', '.join(spec.fields)}"
                )
            if cond.param is not None and cond.param not in self.params:
                raise ValueError(f"when[{i}].param: {cond.param!r} is not declared under params{suggest(cond.param, self.params)}")
        if self.for_ is not None:
            if "held" not in spec.fields:
                raise ValueError(f"for: signal {self.signal} has no persistence count ('held'); remove 'for'")
            if self.for_.param is not None and self.for_.param not in self.params:
                raise ValueError(f"for.param: {self.for_.param!r} is not declared under params{suggest(self.for_.param, self.params)}")
            if self.for_.param is not None and not is_count(self.params[self.for_.param]):
                default = self.params[self.for_.param]
                raise ValueError(
                    f"for.param: params.{self.for_.param} is a persistence window in points and must default to a "
                    f"whole number >= 1, got {default!r}"
                )
        for i, item in enumerate(self.patch):
            if self.category == "lr_too_high" and item.key in LR_KEYS and _may_raise(item):
                raise ValueError(
                    f"patch[{i}]: a rule in category lr_too_high never raises the learning rate "
                    f"({item.key} {item.op} {item.value if item.value_from is None else item.value_from})"
                )
            if item.value_from is not None and item.value_from not in spec.fields:
                raise ValueError(
                    f"patch[{i}].value_from: signal {self.signal} measures no {item.value_from!r}"
                    f"{suggest(item.value_from, spec.fields)}; it measures {', '.join(spec.fields)}"
                )
        try:
            check_template(self.evidence, (*spec.fields, *self.params, *TEMPLATE_BUILTINS))
        except ValueError as exc:
            raise ValueError(f"evidence: {exc}") from None
        return self

    def persistence(self, params: dict[str, Any]) -> int | None:
        """The ``for:`` window in points under the given parameters (None without one)."""
        if self.for_ is None:
            return None
        return int(params[self.for_.param]) if self.for_.param is not None else self.for_.points

    @property
    def stage(self) -> int:
        from paramdoctor.engine.stages import stage_of

        return stage_of(self.category)
