"""The prescription: the findings' config patches, merged in the order practitioners fix things.

Stability first (diverged, unstable, lr_too_high, gradients), then fitting
(lr_too_low, underfitting, undertrained, overtrained), then regularisation
(overfitting, forgetting, eval_mismatch); within a stage the more severe
finding, then the lower code, goes first. The first finding to change a key
owns it: a later change to the same key is dropped and the conflict is
explained in one sentence. The result must validate as a TrainConfig, so
``paramdoctor train`` accepts it as it is.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from paramdoctor.config import flatten, to_tree, validate
from paramdoctor.config.schema import TrainConfig
from paramdoctor.diagnosis import Change, Finding, Prescription
from paramdoctor.engine.schema import PatchItem, Rule
from paramdoctor.engine.stages import severity_rank, stage_name
from paramdoctor.errors import ConfigError, RuleError
from paramdoctor.record import RunRecord


def starting_config(record: RunRecord, base_config: Mapping[str, Any] | None = None) -> TrainConfig:
    """``base_config`` when given (it must be valid), else the run's config when valid, else the defaults."""
    if base_config is not None:
        return validate(dict(base_config), "base config")
    if record.config:
        try:
            return validate(dict(record.config), "run config")
        except ConfigError:
            pass
    return TrainConfig()


def prescribe(
    fired: list[tuple[Rule, Finding]], record: RunRecord, base_config: Mapping[str, Any] | None = None
) -> Prescription:
    """Apply the fired rules' patches to the starting config; return the changes, conflicts and next config."""
    start = flatten(to_tree(starting_config(record, base_config)))
    current = dict(start)
    owners: dict[str, tuple[Rule, Any]] = {}
    changes: list[Change] = []
    conflicts: list[str] = []
    ordered = sorted(fired, key=lambda rf: (rf[0].stage, severity_rank(rf[0].severity), rf[0].code))
    # deferred items (companions of a rule's main fix) come after every other item
    items = [(r, f, i) for deferred in (False, True) for r, f in ordered for i in r.patch if i.defer is deferred]
    for rule, finding, item in items:
        if not item.applies(start):
            continue
        old = start.get(item.key)
        owner = owners.get(item.key)
        if owner is not None and owner[0].code == rule.code:
            # the rule's own later item on the key composes with its earlier one
            new = apply_patch(item, {**start, item.key: owner[1]}, finding.evidence.values)
            owners[item.key] = (rule, new)
            current[item.key] = new
            _replace_change(changes, item.key, new, rule.code)
            continue
        new = apply_patch(item, start, finding.evidence.values)
        if _same(new, old):
            continue
        if owner is not None:  # (two findings that ask for the same value agree: no conflict to report)
            conflict = _conflict(item.key, old, owner, rule, new, deferred=item.defer)
            if not _same(new, owner[1]) and conflict not in conflicts:
                conflicts.append(conflict)
            continue
        owners[item.key] = (rule, new)
        current[item.key] = new
        changes.append(Change(key=item.key, old=old, new=new, reason=item.reason, rule=rule.code))
    changes = [c for c in changes if not _same(c.new, c.old)]
    current["experiment.run_name"] = None
    tree = _unflatten(current)
    try:
        next_config = validate(tree, "prescribed config")
    except ConfigError as exc:
        codes = ", ".join(sorted({c.rule for c in changes})) or "none"
        raise RuleError(f"{exc} (patches from rules {codes}; adjust their patch clamps)") from None
    return Prescription(changes=changes, conflicts=conflicts, next_config=to_tree(next_config))


def apply_patch(item: PatchItem, config: Mapping[str, Any], measured: Mapping[str, Any] | None = None) -> Any:
    """The value ``item`` gives its key, starting from the flat ``config`` (the key's old value when nothing applies).

    ``measured`` holds the finding's evidence values, where ``value_from``
    looks up its operand; a missing or non-finite one leaves the key alone.
    """
    old = config.get(item.key)
    if item.op == "set":
        return item.value
    operand = item.value
    if item.value_from is not None:
        operand = (measured or {}).get(item.value_from)
        if isinstance(operand, bool) or not isinstance(operand, (int, float)) or not math.isfinite(operand):
            return old
    base = old
    if base is None and item.fallback_key is not None:
        base = config.get(item.fallback_key)
    if base is None:
        return item.value if item.op == "at_most" else old
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise RuleError(f"rule patch {item.op} on {item.key}: the current value {base!r} is not a number")
    value = float(operand)  # type: ignore[arg-type]
    if item.op == "multiply":
        raw = base * value
    elif item.op == "add":
        raw = base + value
    elif item.op == "at_least":
        raw = max(base, value)
    else:
        raw = min(base, value)
    new = raw
    if item.min is not None:
        new = max(new, item.min)
    if item.max is not None:
        new = min(new, item.max)
    # a clamp must never turn a raise into a cut (or the reverse): then leave the value alone
    if (raw > base and new < base) or (raw < base and new > base):
        new = base
    if isinstance(old, int) and not isinstance(old, bool) or _is_int_key(item.key):
        return int(round(new))
    return float(f"{new:.6g}")


def _replace_change(changes: list[Change], key: str, new: Any, rule: str) -> None:
    for i, change in enumerate(changes):
        if change.key == key and change.rule == rule:
            changes[i] = Change(key=key, old=change.old, new=new, reason=change.reason, rule=rule)
            return


def _is_int_key(key: str) -> bool:
    from paramdoctor.config import known_keys

    info = known_keys().get(key)
    return info is not None and info.annotation is int


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b and type(a) is type(b) or (a is None and b is None)


def _direction(old: Any, new: Any) -> tuple[str, str]:
    """(verb, noun) for a change: lowers/lower, raises/raise, sets/change."""
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool) and not isinstance(new, bool):
        if new < old:
            return "lowers", "lower"
        if new > old:
            return "raises", "raise"
    return "sets", "change"


def _conflict(key: str, old: Any, owner: tuple[Rule, Any], loser: Rule, proposed: Any, deferred: bool = False) -> str:
    winner, won = owner
    verb, _ = _direction(old, won)
    _, noun = _direction(old, proposed)
    if deferred:
        why = f"{loser.code}'s change of this key only accompanies its main fix and yields to any other finding"
    elif winner.stage != loser.stage:
        why = f"{stage_name(winner.category)} comes first"
    elif winner.severity != loser.severity:
        why = f"{winner.code} is more severe ({winner.severity})"
    else:
        why = f"{winner.code} comes first in the same stage ({stage_name(winner.category)})"
    return (
        f"{winner.code} ({winner.category}) {verb} {key} to {_show(won)}; "
        f"{loser.code}'s {noun} to {_show(proposed)} was dropped: {why}"
    )


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree
