"""Anchor: UMLAUT's training-time heuristics (Schoop, Huang, Hartmann, CHI 2021) at their published defaults.

Sources read
------------
BerkeleyHCI/umlaut at commit 68c2a0226d14c1ef8c8bc7856d594b8a4a3c6c68 (2022-05-27;
``umlaut/heuristics.py`` last changed in 3502516798690e4b6b22fa71a364a9e34adbc460, 2021-02-05):

* ``umlaut/heuristics.py``: ``run_epoch_heuristics`` (run at every Keras
  ``on_epoch_end``) and ``run_pretrain_heuristics``; the checks below.
* ``umlaut/callback.py``: ``UmlautCallback.on_epoch_end`` passes the 0-based
  epoch and the epoch's ``logs``; every error raised at every epoch is reported.
* ``umserver/errors.py`` (``umlaut/errors.py`` links to it): each error's title
  and explanation, used for the category mapping.

Checks that read the training history, with the code's constants
------------------------------------------------------------------
check_overfitting        epoch >= 1: val loss rose since the previous epoch (d_val_loss > 0)
                         while the training loss did not (d_loss <= 0)          -> overfitting
                         (OverfittingError: "validation loss is increasing while training loss is stuck or decreasing")
check_learning_rate_range  optimizer lr > 0.01 -> LRHighError                   -> lr_too_high
                           optimizer lr < 1e-7 -> LRLowError                    -> lr_too_low
check_high_validation_acc  epoch >= 3: val acc > 0.95, or val acc - train acc > 0.05
                           (OverconfidentValAccuracy: "problems with data labeling or splitting ...
                           differences in preparing data for training and evaluation") -> eval_mismatch

How a run maps onto Keras epochs
--------------------------------
Each evaluation row (``_common.eval_rows``) is one epoch, numbered from 0 as
Keras does. The learning rate at a row is ``epoch/lr/<group>`` (epoch-indexed
runs) or the last ``step/lr/<group>`` value at or before the row's step, every
group judged (Keras has one); with no LR curve, the configured LR(s), constant.
``check_high_validation_acc`` needs both accuracies in the original (a missing
one is a KeyError); here its val-acc > 0.95 half runs on val/acc alone.

Left out
--------
check_nan_in_loss: it raises NaNInInputError only when the loss is NaN *and the
model's input batch holds NaN*; a curve record has no input batch (and UMLAUT
raises nothing for a NaN loss with clean input). check_input_shape,
check_input_normalization, check_input_is_floating (the input batch);
check_softmax_computed_before_loss, check_missing_activations,
check_no_activation_last_layer, check_dropout_p_less_than_half (the model and
its source: program structure); check_accuracy_is_added_to_metrics and
check_validation_is_added_to_fit (``NotImplemented`` stubs in the code).
There is no loss-not-decreasing heuristic in the code.
"""

from __future__ import annotations

import math

from paramdoctor.record import RunRecord

from ._common import Finding, Row, asof, configured_lrs, eval_rows, finite, fmt, lr_series, step_of_x

NAME = "umlaut"

LR_HIGH = 0.01  # check_learning_rate_range: lr > 0.01
LR_LOW = 1e-7  # check_learning_rate_range: lr < 1e-7
VAL_ACC_HIGH = 0.95  # check_high_validation_acc: val_acc > 0.95
VAL_OVER_TRAIN = 0.05  # check_high_validation_acc: val_acc - train_acc > .05
HIGH_VAL_FIRST_EPOCH = 3  # check_high_validation_acc: ignores epoch < 3

CATEGORY = {
    "check_overfitting": "overfitting",
    "check_learning_rate_range/high": "lr_too_high",
    "check_learning_rate_range/low": "lr_too_low",
    "check_high_validation_acc": "eval_mismatch",
}
CHECKS = tuple(CATEGORY)


def _overfitting(epoch: int, prev: Row | None, row: Row) -> str | None:
    if prev is None or not all(finite(v) for v in (prev.train_loss, prev.val_loss, row.train_loss, row.val_loss)):
        return None
    d_loss = row.train_loss - prev.train_loss
    d_val = row.val_loss - prev.val_loss
    if d_val > 0 and d_loss <= 0:
        return f"training loss changed by {d_loss:+.3g} while validation loss changed by {d_val:+.3g} ({fmt(prev.val_loss)} -> {fmt(row.val_loss)})"
    return None


def _high_val_acc(epoch: int, row: Row) -> str | None:
    if epoch < HIGH_VAL_FIRST_EPOCH or not finite(row.val_acc):
        return None
    parts = []
    if row.val_acc > VAL_ACC_HIGH:
        parts.append(f"validation accuracy is very high ({100 * row.val_acc:.2f}% > {100 * VAL_ACC_HIGH:g}%)")
    if finite(row.train_acc) and row.val_acc - row.train_acc > VAL_OVER_TRAIN:
        parts.append(f"validation accuracy {100 * row.val_acc:.2f}% is above train accuracy {100 * row.train_acc:.2f}% "
                     f"by more than {100 * VAL_OVER_TRAIN:g} points")
    return "; ".join(parts) if parts else None


def _lrs_at(record: RunRecord, row: Row, curves, configured) -> dict[str, float]:
    if not curves:
        return dict(configured)
    out: dict[str, float] = {}
    step = None
    for group, (level, s) in curves.items():
        if level == "epoch":
            v = asof(s, row.x)
        else:
            if step is None:
                step = step_of_x(record, row.x)
            v = asof(s, step) if step is not None else float(s.values[-1])
        if v is not None:
            out[group] = v
    return out


def explain(record: RunRecord) -> list[Finding]:
    """Every UMLAUT error the run would raise (first epoch of each): (check, category, evidence)."""
    rows = eval_rows(record)
    curves = lr_series(record)
    configured = configured_lrs(record)
    first: dict[str, str] = {}
    fired: dict[str, int] = {}
    prev: Row | None = None

    def raise_error(name: str, evidence: str) -> None:
        first.setdefault(name, evidence)
        fired[name] = fired.get(name, 0) + 1

    for epoch, row in enumerate(rows):
        at = f"Keras epoch {epoch} ({record.x_unit} {row.x:g} in the log)"
        lr_errors: dict[str, str] = {}
        for group, lr in sorted(_lrs_at(record, row, curves, configured).items()):
            if not math.isfinite(lr):
                continue
            if lr > LR_HIGH:
                lr_errors.setdefault("check_learning_rate_range/high", f"{at}: learning rate {group} is {lr:g} (> {LR_HIGH:g})")
            elif lr < LR_LOW:
                lr_errors.setdefault("check_learning_rate_range/low", f"{at}: learning rate {group} is {lr:g} (< {LR_LOW:g})")
        for name, evidence in lr_errors.items():
            raise_error(name, evidence)
        hit = _overfitting(epoch, prev, row)
        if hit:
            raise_error("check_overfitting", f"{at}: {hit}")
        hit = _high_val_acc(epoch, row)
        if hit:
            raise_error("check_high_validation_acc", f"{at}: {hit}")
        prev = row
    return [(name, CATEGORY[name], f"{first[name]} (raised at {fired[name]} of {len(rows)} epochs)") for name in CHECKS if name in first]


def predict(record: RunRecord) -> set[str]:
    return {category for _, category, _ in explain(record)}
