"""The prescription: the findings' config patches, merged in the order practitioners fix things.

Stability first (diverged, unstable, lr_too_high, gradients), then fitting
(lr_too_low, underfitting, undertrained, overtrained), then regularisation
(overfitting, forgetting, eval_mismatch); within a stage the more severe
finding, then the lower code, goes first. The first finding to change a key
owns it: a later change to the same key is dropped and the conflict is
explained in one sentence. The result must validate as a TrainConfig, so
``paramdoctor train`` accepts it as it is.

The two learning rates are one decision: the finding that changes either of
them owns both, so cuts from several findings never stack. A finding that
says the learning rate is too high never raises it, and while one (or a
divergence, or instability) is among the findings, no other finding may. A null
``optimizer.backbone_lr`` is "auto" (:func:`paramdoctor.config.effective_backbone_lr`):
a patch starts from the value it stands for, and a result that auto gives
anyway stays null. Each change records the factor actually applied, and says
so when a clamp made it differ from the factor the rule states.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from paramdoctor.config import effective_backbone_lr, flatten, to_tree, validate
from paramdoctor.config.schema import TrainConfig
from paramdoctor.diagnosis import Change, Finding, Prescription
from paramdoctor.engine.schema import PatchItem, Rule
from paramdoctor.engine.stages import severity_rank, stage_name
from paramdoctor.errors import ConfigError, RuleError
from paramdoctor.record import RunRecord

LR_KEYS = ("optimizer.lr", "optimizer.backbone_lr")
STEPS_TOO_LARGE = ("lr_too_high", "diverged", "unstable")  # categories that say the steps are already too large
BACKBONE_LR = "optimizer.backbone_lr"


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
    owner_of: dict[str, Rule] = {}  # owner key (both LRs share one) -> the rule that decided it
    changed_by: dict[str, str] = {}  # exact key -> the code of the rule that changed it
    changes: list[Change] = []
    conflicts: list[str] = []
    ordered = sorted(fired, key=lambda rf: (rf[0].stage, severity_rank(rf[0].severity), rf[0].code))
    # deferred items (companions of a rule's main fix) come after every other item
    items = [(r, f, i) for deferred in (False, True) for r, f in ordered for i in r.patch if i.defer is deferred]
    # a finding that the steps are too large (or blew up) forbids any other finding to raise the learning rate
    too_high = next((r for r, _ in ordered if r.category in STEPS_TOO_LARGE), None)
    for rule, finding, item in items:
        if not item.applies(start):
            continue
        old = start.get(item.key)
        if changed_by.get(item.key) == rule.code:
            # the rule's own later item on the key composes with its earlier one
            new, note = apply_patch_detail(item, {**start, item.key: current[item.key]}, finding.evidence.values)
            current[item.key] = new
            _replace_change(changes, item.key, new, rule.code, note)
            continue
        new, note = apply_patch_detail(item, start, finding.evidence.values)
        if _same(new, old):
            continue
        winner = owner_of.get(_owner_key(item.key))
        if winner is not None and winner.code != rule.code:
            # (two findings that ask for the same value agree: no conflict to report)
            if not _same(new, current.get(item.key)):
                conflict = _conflict(item.key, old, winner, current.get(item.key), item.key in changed_by, rule, new, item.defer)
                if conflict not in conflicts:
                    conflicts.append(conflict)
            continue
        if item.key in LR_KEYS and _raises(start, item.key, new):
            if rule.category == "lr_too_high":
                continue  # a learning rate called too high is never raised, whatever a measured factor says
            if too_high is not None:
                conflict = (
                    f"{rule.code}'s raise of {item.key} to {_show(new)} was dropped: {too_high.code} "
                    f"({too_high.category}) says the steps are already too large"
                )
                if conflict not in conflicts:
                    conflicts.append(conflict)
                continue
        owner_of[_owner_key(item.key)] = rule
        changed_by[item.key] = rule.code
        current[item.key] = new
        changes.append(Change(key=item.key, old=old, new=new, reason=item.reason, rule=rule.code, note=note))
    _keep_auto_backbone_lr(current, changes)
    changes = [_with_factor(c) for c in changes if not _same(c.new, c.old)]
    current["experiment.run_name"] = None
    tree = _unflatten(current)
    try:
        next_config = validate(tree, "prescribed config")
    except ConfigError as exc:
        codes = ", ".join(sorted({c.rule for c in changes})) or "none"
        raise RuleError(f"{exc} (patches from rules {codes}; adjust their patch clamps)") from None
    return Prescription(changes=changes, conflicts=conflicts, next_config=to_tree(next_config))


def _owner_key(key: str) -> str:
    """Keys that are one decision share an owner: both learning rates are "the learning rate"."""
    return "optimizer.(learning rates)" if key in LR_KEYS else key


def _raises(config: Mapping[str, Any], key: str, new: Any) -> bool:
    old = _effective(config, key)
    return isinstance(new, (int, float)) and isinstance(old, (int, float)) and new > old * (1 + 1e-9)


def _effective(config: Mapping[str, Any], key: str) -> Any:
    """The value ``key`` stands for in the flat ``config``: a null backbone LR is the auto value."""
    value = config.get(key)
    if key == BACKBONE_LR and value is None and config.get("optimizer.lr") is not None:
        return effective_backbone_lr(config)
    return value


def _keep_auto_backbone_lr(current: dict[str, Any], changes: list[Change]) -> None:
    """A backbone LR that was null and that the patches set to exactly what auto gives under the next config stays null."""
    for i, change in enumerate(changes):
        if change.key != BACKBONE_LR or change.old is not None or not isinstance(change.new, (int, float)):
            continue
        auto = effective_backbone_lr({**current, BACKBONE_LR: None})
        if math.isclose(change.new, auto, rel_tol=1e-4):
            current[BACKBONE_LR] = None
            changes[i] = Change(change.key, None, None, change.reason, change.rule, note=change.note)


def _with_factor(change: Change) -> Change:
    old, new = change.old, change.new
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    factor = float(f"{new / old:.4g}") if numeric and old not in (0, 0.0) else None
    return Change(change.key, old, new, change.reason, change.rule, factor=factor, note=change.note)


def apply_patch(item: PatchItem, config: Mapping[str, Any], measured: Mapping[str, Any] | None = None) -> Any:
    """The value ``item`` gives its key, starting from the flat ``config`` (the key's old value when nothing applies).

    ``measured`` holds the finding's evidence values, where ``value_from``
    looks up its operand; a missing or non-finite one leaves the key alone.
    """
    return apply_patch_detail(item, config, measured)[0]


def apply_patch_detail(
    item: PatchItem, config: Mapping[str, Any], measured: Mapping[str, Any] | None = None
) -> tuple[Any, str]:
    """:func:`apply_patch`, and a note when a clamp changed what the item states (empty otherwise)."""
    old = config.get(item.key)
    if item.op == "set":
        return item.value, ""
    operand = item.value
    if item.value_from is not None:
        operand = (measured or {}).get(item.value_from)
        if isinstance(operand, bool) or not isinstance(operand, (int, float)) or not math.isfinite(operand):
            return old, ""
    base = _effective(config, item.key)
    if base is None and item.fallback_key is not None:
        base = config.get(item.fallback_key)
    if base is None:
        return (item.value if item.op == "at_most" else old), ""
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
    bound = None
    if item.min is not None and new < item.min:
        new, bound = item.min, f"raised to the floor {item.min:g}"
    if item.max is not None and new > item.max:
        new, bound = item.max, f"capped at {item.max:g}"
    # a clamp must never turn a raise into a cut (or the reverse): then leave the value alone
    if (raw > base and new < base) or (raw < base and new > base):
        new, bound = base, "left as it is: the clamp would reverse the change"
    note = ""
    if bound is not None and not math.isclose(new, raw, rel_tol=1e-9):
        if item.op == "multiply" and base:
            note = f"x{_factor_text(new / base)} applied (x{_factor_text(value)} {bound})"
        else:
            note = f"{_show(new)} applied ({_show(float(f'{raw:.6g}'))} {bound})"
    if isinstance(old, int) and not isinstance(old, bool) or _is_int_key(item.key):
        return int(round(new)), note
    return float(f"{new:.6g}"), note


def _factor_text(factor: float) -> str:
    """A factor as a person writes it: 300, 2.83, 0.1 (never 1e+03)."""
    return f"{factor:.0f}" if abs(factor) >= 100 else f"{factor:.3g}"


def _replace_change(changes: list[Change], key: str, new: Any, rule: str, note: str = "") -> None:
    for i, change in enumerate(changes):
        if change.key == key and change.rule == rule:
            changes[i] = Change(key=key, old=change.old, new=new, reason=change.reason, rule=rule, note=note)
            return


def _is_int_key(key: str) -> bool:
    return key in _int_keys()


@functools.lru_cache(maxsize=1)
def _int_keys() -> frozenset[str]:
    """The config keys typed ``int`` (a fact of the TrainConfig schema: read once, not once per patch item)."""
    from paramdoctor.config import known_keys

    return frozenset(key for key, info in known_keys().items() if info.annotation is int)


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


def _conflict(
    key: str, old: Any, winner: Rule, won: Any, winner_changed_key: bool, loser: Rule, proposed: Any, deferred: bool = False
) -> str:
    _, noun = _direction(old, proposed)
    if not winner_changed_key:  # the other learning rate: the winner decided the learning rates, this one stays
        return (
            f"{loser.code}'s {noun} of {key} to {_show(proposed)} was dropped: {winner.code} ({winner.category}) "
            "already changed the learning rate; one learning-rate change per prescription"
        )
    verb, _ = _direction(old, won)
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
