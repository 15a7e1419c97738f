"""The prescription in the words of the tool a run came from, for every report format.

A run logged by Hugging Face's Trainer, Lightning, Keras, LLaMA-Factory or
Ultralytics is fixed by editing *that tool's* arguments, not paramdoctor's
config. :func:`tool_prescription` translates the diagnosis' changes with
:mod:`paramdoctor.vocab` (using the run's own logged values, so "0.3x the
learning rate" becomes a number); the terminal, Markdown, HTML and JSON
reports all render the result stored on ``diag.prescription.tool``, and
:func:`tool_patch_yaml` writes it as a patch file (``next.<tool>.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from paramdoctor.diagnosis import Diagnosis, ToolPrescription
from paramdoctor.record import RunRecord
from paramdoctor.report.common import fmt_value
from paramdoctor.vocab import translate_changes
from paramdoctor.vocab.terms import ALIASES

NATIVE_SOURCE = "paramdoctor"
TOOL_LABELS = {
    "hf_trainer": "Hugging Face TrainingArguments",
    "llamafactory": "LLaMA-Factory YAML",
    "lightning": "Lightning Trainer and LightningModule",
    "keras": "Keras fit, optimizer and callbacks",
    "ultralytics": "Ultralytics train arguments",
}
NO_VALUE = "(see note)"


def tool_prescription(diag: Diagnosis, record: RunRecord) -> ToolPrescription | None:
    """The changes in ``record.source``'s vocabulary; None for runs paramdoctor trained itself.

    The run's own values come from its params and meta (meta wins: it holds
    numbers the importer derived, such as ``peak_lr`` and ``steps_per_epoch``).
    """
    if record.source == NATIVE_SOURCE:
        return None
    name = ALIASES.get(record.source.lower(), record.source.lower())
    own_values: dict[str, Any] = {**record.params, **record.meta}
    return ToolPrescription(name=name, changes=translate_changes(diag.prescription.changes, name, own_values))


def attach_tool_prescription(diag: Diagnosis, record: RunRecord) -> Diagnosis:
    """Set ``diag.prescription.tool`` from ``record`` (in place) and return ``diag``."""
    diag.prescription.tool = tool_prescription(diag, record)
    return diag


def shows_tool_terms(diag: Diagnosis) -> bool:
    """Whether the reports show a second table: a foreign run whose tool names differ from paramdoctor's.

    For logs with no tool of their own (``csv``, ``jsonl``) the translation is
    the paramdoctor table again, so it is not repeated.
    """
    tool = diag.prescription.tool
    if tool is None or not tool.changes:
        return False
    return any(c.key != c.source_key or c.note for c in tool.changes)


def tool_title(tool: ToolPrescription) -> str:
    """``in hf_trainer terms (Hugging Face TrainingArguments)``."""
    label = TOOL_LABELS.get(tool.name)
    return f"in {tool.name} terms" + (f" ({label})" if label else "")


def tool_rows(tool: ToolPrescription) -> list[tuple[str, str, str, str]]:
    """(setting, now, next, note) texts, one per change: what every report's tool table shows.

    ``now`` is ``?`` when the log did not give the run's value; ``next`` is the
    factor (``x0.3``) when only a relative change can be said, ``(see note)``
    when the change is one the note describes in words.
    """
    rows = []
    for change in tool.changes:
        now = "?" if change.old is None else fmt_value(change.old)
        if change.new is not None:
            new = fmt_value(change.new)
        elif change.factor is not None:
            new = f"x{change.factor:.3g}"
        else:
            new = NO_VALUE
        rows.append((change.key, now, new, change.note or ""))
    return rows


def tool_patch_path(next_config: Path, tool_name: str) -> Path:
    """``runs/next.yaml`` -> ``runs/next.hf_trainer.yaml``: the tool's patch beside paramdoctor's config."""
    if next_config.suffix:
        return next_config.with_name(f"{next_config.stem}.{tool_name}{next_config.suffix}")
    return next_config.with_name(f"{next_config.name}.{tool_name}.yaml")


def tool_patch_yaml(tool: ToolPrescription, *, run: str = "") -> str:
    """The changes as a flat YAML mapping of the tool's settings to their new values.

    Settings the tool takes as plain arguments (``weight_decay``,
    ``num_train_epochs``, ``lr0``) are keys, so the file merges into the
    tool's own argument file; settings that live in code (callbacks,
    ``configure_optimizers``), changes with no value to give, and every note
    are comments. When two changes set the same key, the later one wins, as
    in paramdoctor's own prescription.
    """
    entries: dict[str, Any] = {}
    comments: dict[str, list[str]] = {}
    loose: list[str] = []  # comment-only lines: code settings and unknown values
    for change in tool.changes:
        why = " ".join(part for part in (change.reason, f"[{change.source_key}]" if change.source_key else "") if part)
        if _is_setting(change.key, change.new):
            entries[change.key] = _yaml_scalar(change.new)
            lines = comments.setdefault(change.key, [])
            lines.append(why)
            if change.note:
                lines.append(change.note)
            if change.old is not None:
                lines.append(f"was {fmt_value(change.old)}")
            continue
        shown = fmt_value(change.new) if change.new is not None else (
            f"x{change.factor:.3g}" if change.factor is not None else "?"
        )
        said = _one_line(why + (f"; {change.note}" if change.note else ""))
        loose.append(f"{_one_line(change.key)}: {shown}  # {said}")
    out = [f"# paramdoctor's prescription{f' for {_one_line(run)}' if run else ''} {tool_title(tool)}."]
    out.append("# Merge the keys into your own arguments; the commented lines are changes to make in code or by hand.")
    for key, value in entries.items():
        out.append("")
        out += [f"# {_one_line(text)}" for text in comments[key]]
        out.append(yaml.safe_dump({key: value}, default_flow_style=False, width=10_000).rstrip())
    if loose:
        out += ["", "# by hand:"] + [f"# {text}" for text in loose]
    return "\n".join(out) + "\n"


def _is_setting(key: str, value: Any) -> bool:
    """A key and value a YAML argument file can hold (``warmup_ratio: 0.1``).

    Not code (``EarlyStopping(patience=...)``), not a value that is a sentence
    or a call (``callbacks: add EarlyStopping(...)``), not a missing value.
    """
    if value is None or not key or not all(ch.isalnum() or ch in "_.-" for ch in key):
        return False
    return not (isinstance(value, str) and (any(ch.isspace() for ch in value) or "(" in value))


def _yaml_scalar(value: Any) -> Any:
    """Numbers, strings and booleans as they are; anything else as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
