"""Say a paramdoctor prescription in the words of the tool the run came from.

``translate_changes`` turns each :class:`~paramdoctor.diagnosis.Change` (a
dotted paramdoctor key with old and new values) into :class:`ToolChange` items
in the tool's vocabulary (:mod:`paramdoctor.vocab.terms`). A relative change
is applied to the run's own value when the log gave it: for a foreign run the
engine prescribes from paramdoctor's defaults, so "optimizer.lr 1e-3 -> 3e-4"
means "0.3x", which for a Hugging Face run logged at ``learning_rate`` 2e-5
is 6e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from paramdoctor.diagnosis import Change
from paramdoctor.vocab.terms import ALIASES, RELATIVE, TOOLS, Term

IDENTITY_TOOLS = ("paramdoctor", "csv", "jsonl")


@dataclass(frozen=True)
class ToolChange:
    """One change in a tool's vocabulary.

    ``key`` is the tool's own name (or the paramdoctor key when the tool has no
    equivalent, with ``note`` saying so); ``old`` is the run's value when the
    log gave it; ``new`` is None when only a relative change can be said
    (``factor`` then holds it). ``source_key`` is the paramdoctor key.
    """

    key: str
    old: Any
    new: Any
    reason: str
    note: str = ""
    source_key: str = ""
    factor: float | None = None


def supported_tools() -> tuple[str, ...]:
    return tuple(TOOLS)


def translate_changes(changes: Iterable[Change], tool: str | None, params: Mapping[str, Any] | None = None) -> list[ToolChange]:
    """``changes`` in ``tool``'s vocabulary; ``params`` is the run's ``params`` and ``meta`` merged (its own values)."""
    name = ALIASES.get((tool or "").lower(), (tool or "").lower())
    terms = TOOLS.get(name)
    params = dict(params or {})
    out: list[ToolChange] = []
    for change in changes:
        if terms is None:
            note = "" if name in IDENTITY_TOOLS else f"no vocabulary for tool '{tool}': paramdoctor's key is shown"
            out.append(ToolChange(change.key, change.old, change.new, change.reason, note, change.key))
            continue
        special = _SPECIAL.get(change.key)
        if special is not None:
            out.extend(special(change, name, terms, params))
            continue
        term = terms.get(change.key)
        if term is None:
            out.append(ToolChange(change.key, None, change.new, change.reason, f"no {name} setting for {change.key}", change.key))
            continue
        out.append(_translate(change, term, params))
    return out


def _translate(change: Change, term: Term, params: Mapping[str, Any]) -> ToolChange:
    if term.key is None:
        return ToolChange(change.key, None, None, change.reason, f"no equivalent: {term.note}", change.key, _factor(change))
    actual = _actual(term, params)
    if term.values:
        if change.new not in term.values:
            return ToolChange(term.key, None, change.new, change.reason, term.note, change.key)
        value = term.values[change.new]
        if value is None:
            note = f"no {term.key} equivalent of '{change.new}'" + (f"; {term.note}" if term.note else "")
            return ToolChange(term.key, None, None, change.reason, note, change.key)
        return ToolChange(term.key, None, value, change.reason, term.note, change.key)
    factor = _factor(change)
    if term.scale == RELATIVE and factor is not None:
        if actual is not None and actual != 0:
            return ToolChange(term.key, _plain(actual), _scaled(actual, factor, term.integer), change.reason, term.note, change.key, factor)
        if actual is None:
            note = f"multiply your current {term.key} by {factor:.3g} (the log does not show its value)"
            note += f"; {term.note}" if term.note else ""
            return ToolChange(term.key, None, None, change.reason, note, change.key, factor)
    new = _as_int(change.new) if term.integer else change.new
    return ToolChange(term.key, _plain(actual) if actual is not None else None, new, change.reason, term.note, change.key)


# --- keys that need more than a rename -------------------------------------------


def _warmup(change: Change, tool: str, terms: dict[str, Term], params: Mapping[str, Any]) -> list[ToolChange]:
    """Warmup in epochs -> HF/LLaMA-Factory ``warmup_ratio`` (or ``warmup_steps``), Keras warmup steps, Lightning note."""
    epochs = _number(change.new)
    if "scheduler.warmup_epochs" in terms:  # the tool counts warmup in epochs too
        return [_translate(change, terms["scheduler.warmup_epochs"], params)]
    total_epochs = _first(params, ("num_train_epochs", "max_epochs", "epochs"))
    steps_per_epoch = _first(params, ("steps_per_epoch",))
    reason = change.reason
    if epochs is None:
        return [ToolChange(change.key, None, change.new, reason, "", change.key)]
    if tool in ("hf_trainer", "llamafactory"):
        if total_epochs:
            return [ToolChange("warmup_ratio", None, _sig(epochs / total_epochs), reason, f"{epochs:g} of {total_epochs:g} epochs", change.key)]
        if steps_per_epoch:
            return [ToolChange("warmup_steps", None, int(round(epochs * steps_per_epoch)), reason, f"{epochs:g} epochs of {steps_per_epoch:g} steps", change.key)]
        return [ToolChange("warmup_ratio", None, None, reason, f"warm up over {epochs:g} epochs: warmup_ratio = {epochs:g} / num_train_epochs", change.key)]
    steps = int(round(epochs * steps_per_epoch)) if steps_per_epoch else None
    in_steps = f"{steps} optimizer steps" if steps is not None else f"{epochs:g} epochs' worth of optimizer steps"
    if tool == "keras":
        note = f"keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.0, warmup_target=<your lr>, warmup_steps={steps if steps is not None else 'N'}, ...): {in_steps}"
        return [ToolChange("CosineDecay(warmup_steps=...)", None, steps, reason, note, change.key)]
    note = (
        "Lightning has no warmup setting: in configure_optimizers chain LinearLR(start_factor=0.01, total_iters=N) "
        f"before your scheduler with SequentialLR, stepped per 'step'; N = {in_steps}"
    )
    return [ToolChange("configure_optimizers: warmup", None, steps, reason, note, change.key)]


def _patience(change: Change, tool: str, terms: dict[str, Term], params: Mapping[str, Any]) -> list[ToolChange]:
    """Patience in epochs; HF and LLaMA-Factory count evaluations, so step-indexed runs convert."""
    term = terms["early_stopping.patience"]
    translated = _translate(change, term, params)
    epochs = _number(change.new)
    if tool not in ("hf_trainer", "llamafactory") or epochs is None:
        return [translated]
    eval_steps, steps_per_epoch = _first(params, ("eval_steps",)), _first(params, ("steps_per_epoch",))
    if eval_steps and steps_per_epoch and eval_steps < steps_per_epoch:
        evaluations = max(1, math.ceil(epochs * steps_per_epoch / eval_steps))
        note = f"{epochs:g} epochs = {evaluations} evaluations every {eval_steps:g} steps; {term.note}"
        return [ToolChange(translated.key, translated.old, evaluations, change.reason, note, change.key)]
    return [translated]


def _early_stopping(change: Change, tool: str, terms: dict[str, Term], params: Mapping[str, Any]) -> list[ToolChange]:
    on = bool(change.new)
    reason = change.reason
    if tool == "hf_trainer":
        if not on:
            return [ToolChange("callbacks", None, "remove EarlyStoppingCallback", reason, "", change.key)]
        return [
            ToolChange("callbacks", None, "EarlyStoppingCallback(early_stopping_patience=...)", reason,
                       "transformers.EarlyStoppingCallback counts evaluations without improvement", change.key),
            ToolChange("load_best_model_at_end", None, True, reason, "with metric_for_best_model and save_strategy = eval_strategy", change.key),
        ]
    if tool == "llamafactory":
        if not on:
            return [ToolChange("early_stopping_steps", None, None, reason, "remove early_stopping_steps from the YAML", change.key)]
        return [
            ToolChange("early_stopping_steps", None, None, reason, "set it to the evaluations to wait without improvement", change.key),
            ToolChange("load_best_model_at_end", None, True, reason, "with metric_for_best_model", change.key),
        ]
    if tool in ("lightning", "keras"):
        callback = "EarlyStopping(monitor=..., patience=...)"
        if tool == "keras":
            callback = "EarlyStopping(monitor='val_loss', patience=..., restore_best_weights=True)"
        return [ToolChange("callbacks", None, f"{'add' if on else 'remove'} {callback}", reason, "", change.key)]
    if tool == "ultralytics":
        if not on:
            return [ToolChange("patience", _first(params, ("patience",)), 0, reason, "patience=0 turns early stopping off", change.key)]
        return [ToolChange("patience", _first(params, ("patience",)), None, reason, "set patience to the epochs to wait without improvement", change.key)]
    return [ToolChange(change.key, change.old, change.new, reason, "", change.key)]


_SPECIAL = {
    "scheduler.warmup_epochs": _warmup,
    "early_stopping.patience": _patience,
    "early_stopping.enabled": _early_stopping,
}


# --- numbers -----------------------------------------------------------------------


def _factor(change: Change) -> float | None:
    old, new = _number(change.old), _number(change.new)
    if old is None or new is None or old == 0:
        return None
    return new / old


def _actual(term: Term, params: Mapping[str, Any]) -> float | None:
    return _first(params, term.actual)


def _first(params: Mapping[str, Any], names: Iterable[str]) -> float | None:
    for name in names:
        value = _number(params.get(name))
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _scaled(actual: float, factor: float, integer: bool) -> float | int:
    raw = actual * factor
    if not integer:
        return _sig(raw)
    value = int(round(raw))
    if factor > 1 and value <= actual:  # a raise must stay a raise after rounding
        value = int(actual) + 1
    if factor < 1 and value >= actual:
        value = int(actual) - 1
    return max(1, value)


def _sig(value: float) -> float:
    return float(f"{value:.3g}")


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _as_int(value: Any) -> Any:
    number = _number(value)
    return int(round(number)) if number is not None else value
