"""Anchors: the published heuristics of three training-diagnosis systems, run on paramdoctor's run records.

Each anchor is implemented from its system's own source at its published
defaults (no tuning on paramdoctor's corpus) and exposes
``predict(record) -> set[str]`` (categories from
:data:`paramdoctor.diagnosis.CATEGORIES`) and
``explain(record) -> list[(check, category, evidence)]``.

* ``smdebug``: Amazon SageMaker Debugger built-in rules (:mod:`.smdebug_rules`)
* ``autotrainer``: AUTOTRAINER's problem checker, ICSE 2021 (:mod:`.autotrainer`)
* ``umlaut``: UMLAUT's epoch heuristics, CHI 2021 (:mod:`.umlaut`)

The module docstrings name the repositories, paths and commits read, the
defaults, the category mapping and what was left out.
"""

from __future__ import annotations

from collections.abc import Callable

from paramdoctor.record import RunRecord

from . import autotrainer, smdebug_rules, umlaut

Predict = Callable[[RunRecord], set[str]]
Explain = Callable[[RunRecord], list[tuple[str, str, str]]]

ANCHORS: dict[str, Predict] = {
    smdebug_rules.NAME: smdebug_rules.predict,
    autotrainer.NAME: autotrainer.predict,
    umlaut.NAME: umlaut.predict,
}

EXPLAINERS: dict[str, Explain] = {
    smdebug_rules.NAME: smdebug_rules.explain,
    autotrainer.NAME: autotrainer.explain,
    umlaut.NAME: umlaut.explain,
}

# check name -> category, per anchor (the mapping tables in the module docstrings)
CATEGORY_MAPS: dict[str, dict[str, str]] = {
    smdebug_rules.NAME: dict(smdebug_rules.CATEGORY),
    autotrainer.NAME: dict(autotrainer.CATEGORY),
    umlaut.NAME: dict(umlaut.CATEGORY),
}

__all__ = ["ANCHORS", "EXPLAINERS", "CATEGORY_MAPS", "autotrainer", "smdebug_rules", "umlaut"]
