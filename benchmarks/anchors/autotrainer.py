"""Anchor: AUTOTRAINER's problem checker (Zhang et al., ICSE 2021) at its published defaults.

Sources read
------------
shiningrain/AUTOTRAINER at commit 04f4033a6d46f7b430c00d4bd567eb6b29f97333
("v1.0", 2020-08-31, the code published with the ICSE 2021 paper):

* ``AutoTrainer/utils/monitor.py``: ``loss_issue``, ``ol_judge``, ``max_delta_acc``,
  ``gradient_issue``, ``gradient_message_summary``, ``weights_issue`` and
  ``IssueMonitor.determine`` (the feature flags and the decision order).
* ``AutoTrainer/utils/utils.py``: ``default_param`` and ``LossHistory.on_epoch_end``
  (the monitor runs when ``epoch % checkgap == 0``, epoch 0-based; features are
  kept between checks; training stops at the first check that finds a problem).
  ``model_train`` defaults: ``checktype='epoch_3'``, ``determine_threshold=1``.
* ``AutoTrainer/utils/modules.py``: ``filtered_issue`` / ``problem_evaluation``
  (one problem is kept, by priority vanish = explode = relu > not_converge = unstable).
* ``AutoTrainer/utils/repair.py``: the repairs per problem (used for the category mapping).

The newest commit (03a463ea05691a73403d7cff99a368fb4b6720cf, 2023) adds
activation/loss-function checks that need the model, and changes ``nan_loss`` to
"any loss >= 1e3" and ``not_converge`` to "both accuracies below Theta"; this
anchor follows v1.0, the version the paper evaluated.

Defaults (``default_param``)
----------------------------
beta_1=1e-3, beta_2=1e-4 (vanishing: gradient-norm ratio first/last layer < beta_1
and first-layer norm < beta_2); beta_3=70 (exploding: ratio > beta_3);
gamma=0.7 (dying ReLU: share of zero gradients); zeta=0.03, eta=0.2
(oscillation: ``ol_judge`` amplitude and rate); delta=0.01 (slow convergence:
largest epoch-to-epoch accuracy gain, train and validation); Theta=0.7
(satisfactory accuracy); checkgap 3 epochs; judgment_point 0.3 of the planned
epochs; determine_threshold 1; nan loss: NaN/inf in either loss or last
validation loss >= 1e5.

How a run maps onto the checker
-------------------------------
Each evaluation row is one Keras epoch (``history['loss','acc','val_loss','val_acc']``;
see ``_common.eval_rows``); total_epoch is ``meta.max_epochs`` for epoch-indexed
runs, else the number of rows. Accuracy is normalised to a fraction.
AUTOTRAINER reads the first batch's per-layer gradients at each check; here:

* vanishing / exploding gradient: REDUCED to ``telemetry/<group>/grad_norm``
  (runs paramdoctor trained): the first layer group's norm over the last
  group's (``head``) stands in for first-kernel / last-kernel. Without telemetry
  these checks cannot run (``step/grad_norm`` is one global norm: no ratio).
* NaN gradient: a non-finite ``step/grad_norm`` or telemetry grad norm at the check.
* NaN weights: a non-finite ``telemetry/<group>/drift`` or ``update_ratio`` at the check.
* dying ReLU: LEFT OUT (needs the share of exactly-zero gradient entries).
* oscillating loss: ``ol_judge`` reads ``history['acc']`` (training accuracy),
  as the code does; no train/acc -> not judged.
* not_converge / slow convergence: use the accuracy curves the run has
  (the code requires both).

Problem -> category
-------------------
explode (NaN/inf loss, weights or gradients) -> diverged
explode (gradient ratio > beta_3)            -> gradients
vanish                                       -> gradients
unstable ("oscillating loss")                -> lr_too_high  (the condition is repeated swings; the repairs
                                                 are Adam, lr x0.1, ReduceLROnPlateau, a larger batch)
not_converge ("slow convergence")            -> lr_too_low   (the condition is accuracy gains < delta per epoch;
                                                 the repairs are another optimizer or lr x10^k)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from paramdoctor import keys
from paramdoctor.record import RunRecord, Series

from ._common import Finding, Row, eval_rows, fmt, max_epochs, ordered_groups, series, step_of_x, telemetry

NAME = "autotrainer"

PARAMS = {
    "beta_1": 1e-3,
    "beta_2": 1e-4,
    "beta_3": 70.0,
    "gamma": 0.7,
    "zeta": 0.03,
    "eta": 0.2,
    "delta": 0.01,
    "Theta": 0.7,
}
CHECKGAP = 3  # model_train(checktype='epoch_3')
JUDGMENT_POINT = 0.3  # loss_issue(judgment_point=0.3)
NAN_VAL_LOSS = 1e5  # loss_issue: test_loss[-1] >= 1e+5 counts as nan_loss
DETERMINE_THRESHOLD = 1
PRIORITY = {"vanish": 2, "explode": 2, "relu": 2, "not_converge": 1, "unstable": 1}  # modules.problem_evaluation

CATEGORY = {
    "explode_nan": "diverged",
    "explode_gradient": "gradients",
    "vanish": "gradients",
    "unstable": "lr_too_high",
    "not_converge": "lr_too_low",
}
CHECKS = tuple(CATEGORY)


@dataclass
class _Features:
    not_converge: bool = False
    unstable_loss: bool = False
    nan_loss: bool = False
    sc_accuracy: bool = False
    vanish_gradient: int = 0
    explode_gradient: int = 0
    nan_gradient: bool = False
    nan_weight: bool = False
    notes: dict[str, str] = field(default_factory=dict)


def _vals(rows: list[Row], name: str) -> list[float] | None:
    vals = [getattr(r, name) for r in rows]
    present = [v for v in vals if v is not None]
    return present or None


def ol_judge(acc: list[float], threshold: float, rate: float) -> tuple[bool, int]:
    """``monitor.ol_judge``: local maxima and minima paired in order; count pairs apart by >= threshold."""
    maximum, minimum = [], []
    for i in range(1, len(acc) - 1):
        if acc[i] - acc[i - 1] >= 0 and acc[i] - acc[i + 1] >= 0:
            maximum.append(acc[i])
        if acc[i] - acc[i - 1] <= 0 and acc[i] - acc[i + 1] <= 0:
            minimum.append(acc[i])
    count = sum(1 for i in range(min(len(maximum), len(minimum))) if maximum[i] - minimum[i] >= threshold)
    return count >= rate * len(acc), count


def max_delta_acc(acc: list[float]) -> float:
    """``monitor.max_delta_acc``: the largest rise between consecutive epochs (0 when none)."""
    best = 0.0
    for a, b in zip(acc, acc[1:]):
        if b - a > best:
            best = b - a
    return best


def _latest(s: Series | None, step: float | None) -> tuple[float, float] | None:
    """(step, value) of the last point at or before ``step`` (the whole series' last point when step is unknown)."""
    if s is None:
        return None
    if step is None:
        return float(s.steps[-1]), float(s.values[-1])
    i = int(np.searchsorted(s.steps, step, side="right")) - 1
    return (float(s.steps[i]), float(s.values[i])) if i >= 0 else None


def _gradient_issue(f: _Features, record: RunRecord, step: float | None) -> None:
    """``monitor.gradient_issue`` on what the run logged at the check's step."""
    p = PARAMS
    grads = telemetry(record, keys.TELEMETRY_GRAD_NORM)
    for label, s in [("step/grad_norm", series(record, keys.STEP_GRAD_NORM))] + [(f"telemetry/{g}/grad_norm", s) for g, s in sorted(grads.items())]:
        got = _latest(s, step)
        if got is not None and not math.isfinite(got[1]):
            f.nan_gradient = True
            f.notes.setdefault("nan", f"{label} = {got[1]} at step {got[0]:g}")
            return
    order = ordered_groups(grads)
    if len(order) < 2:
        return
    first, last = _latest(grads[order[0]], step), _latest(grads[order[-1]], step)
    if first is None or last is None or not (math.isfinite(first[1]) and math.isfinite(last[1])) or last[1] <= 0:
        return
    rate = first[1] / last[1]
    ratio = f"grad norm {order[0]} / {order[-1]} = {fmt(first[1])} / {fmt(last[1])} = {fmt(rate)}"
    if rate < p["beta_1"] and first[1] < p["beta_2"]:
        f.vanish_gradient += 1
        f.notes.setdefault("vanish", f"{ratio} < beta_1 {p['beta_1']:g} and {order[0]} norm < beta_2 {p['beta_2']:g} at step {first[0]:g}")
    if rate > p["beta_3"]:
        f.explode_gradient += 1
        f.notes.setdefault("explode_gradient", f"{ratio} > beta_3 {p['beta_3']:g} at step {first[0]:g}")


def _weights_issue(f: _Features, record: RunRecord, step: float | None) -> None:
    """``monitor.weights_issue`` reduced: non-finite weights show as non-finite drift or update ratio."""
    for fld in (keys.TELEMETRY_DRIFT, keys.TELEMETRY_UPDATE_RATIO):
        for g, s in sorted(telemetry(record, fld).items()):
            got = _latest(s, step)
            if got is not None and not math.isfinite(got[1]):
                f.nan_weight = True
                f.notes.setdefault("nan", f"telemetry/{g}/{fld} = {got[1]} at step {got[0]:g} (weights not finite)")
                return


def _loss_issue(f: _Features, hist: list[Row], current_epoch: float, total_epoch: float, unit: str) -> None:
    """``monitor.loss_issue`` (v1.0) on the history so far."""
    p = PARAMS
    train_loss, test_loss = _vals(hist, "train_loss"), _vals(hist, "val_loss")
    if train_loss is None and test_loss is None:
        return
    for name, attr in (("val loss", "val_loss"), ("train loss", "train_loss")):
        bad = [r for r in hist if getattr(r, attr) is not None and not math.isfinite(getattr(r, attr))]
        if bad:
            f.nan_loss = True
            f.notes.setdefault("nan", f"{name} is {getattr(bad[0], attr)} at {unit} {bad[0].x:g}")
            return
    if test_loss is not None and test_loss[-1] >= NAN_VAL_LOSS:
        f.nan_loss = True
        f.notes.setdefault("nan", f"last val loss {fmt(test_loss[-1])} >= {NAN_VAL_LOSS:g} at {unit} {hist[-1].x:g}")
        return
    if current_epoch < JUDGMENT_POINT * total_epoch:
        return
    train_acc, test_acc = _vals(hist, "train_acc"), _vals(hist, "val_acc")
    if train_acc is not None and not f.unstable_loss:
        fired, count = ol_judge(train_acc, p["zeta"], p["eta"])
        if fired:
            f.unstable_loss = True
            f.notes["unstable"] = (f"train acc over {len(train_acc)} epochs to {unit} {hist[-1].x:g}: "
                                   f"{count} peak/trough pairs apart by >= zeta {p['zeta']:g} "
                                   f"(>= eta {p['eta']:g} x {len(train_acc)} = {p['eta'] * len(train_acc):.3g})")
    accs = [(n, a) for n, a in (("val", test_acc), ("train", train_acc)) if a is not None]
    if not accs:
        return
    best = {n: max((v for v in a if math.isfinite(v)), default=-math.inf) for n, a in accs}
    if any(b < p["Theta"] for b in best.values()) and not f.not_converge:
        f.not_converge = True
        f.notes["not_converge"] = ", ".join(f"best {n} acc {fmt(b)}" for n, b in best.items()) + f" < Theta {p['Theta']:g} by {unit} {hist[-1].x:g}"
    gains = {n: max_delta_acc(a) for n, a in accs}
    if all(g < p["delta"] for g in gains.values()) and not f.sc_accuracy:
        f.sc_accuracy = True
        shown = ", ".join(f"largest {n} acc gain between epochs {fmt(g)}" for n, g in gains.items())
        f.notes["sc_accuracy"] = f"{shown} < delta {p['delta']:g} over {len(hist)} epochs to {unit} {hist[-1].x:g}"


def _judge(f: _Features) -> list[str]:
    """``IssueMonitor.determine``'s decision, then ``filtered_issue``'s priority."""
    issues: list[str] = []
    if f.nan_loss or f.nan_weight or f.nan_gradient:
        issues.append("explode_nan")
    if f.not_converge or f.sc_accuracy:
        if f.explode_gradient >= DETERMINE_THRESHOLD:
            issues.append("explode_gradient")
        elif f.vanish_gradient >= DETERMINE_THRESHOLD:
            issues.append("vanish")
        elif f.sc_accuracy:
            issues.append("not_converge")
    elif f.unstable_loss:
        issues.append("unstable")
    if not issues:
        return []

    def rank(problem: str) -> int:
        return PRIORITY[problem.split("_")[0] if problem.startswith("explode") else problem]

    top = max(rank(i) for i in issues)
    return [i for i in issues if rank(i) == top]  # filtered_issue keeps one; a tie (explode + vanish) keeps both here


def _evidence(problem: str, f: _Features, at: str) -> str:
    if problem == "explode_nan":
        return f"explode at {at}: {f.notes.get('nan', 'non-finite value')}"
    if problem == "explode_gradient":
        return f"explode at {at}: {f.notes['explode_gradient']} (accuracy not converged: {f.notes.get('not_converge') or f.notes.get('sc_accuracy')})"
    if problem == "vanish":
        return f"vanish at {at}: {f.notes['vanish']} (accuracy not converged: {f.notes.get('not_converge') or f.notes.get('sc_accuracy')})"
    if problem == "not_converge":
        return f"not_converge at {at}: {f.notes['sc_accuracy']}" + (f"; {f.notes['not_converge']}" if "not_converge" in f.notes else "")
    return f"unstable at {at}: {f.notes['unstable']}"


def explain(record: RunRecord) -> list[Finding]:
    """The problem(s) AUTOTRAINER reports at its first check that finds one: (problem, category, evidence)."""
    rows = eval_rows(record)
    if not rows:
        return []
    if record.x_unit == "epoch":  # Keras: len(history) is the epoch number; total_epoch the planned epochs
        total_epoch = float(max_epochs(record) or 0)
        total_epoch = max(total_epoch, rows[-1].x, float(len(rows)))
    else:
        total_epoch = float(len(rows))
    f = _Features()
    for e in range(0, len(rows), CHECKGAP):
        hist = rows[: e + 1]
        current_epoch = hist[-1].x if record.x_unit == "epoch" else float(e + 1)
        step = step_of_x(record, hist[-1].x)
        _gradient_issue(f, record, step)
        _weights_issue(f, record, step)
        _loss_issue(f, hist, current_epoch, total_epoch, record.x_unit)
        problems = _judge(f)
        if problems:
            at = f"the check after {record.x_unit} {hist[-1].x:g}"
            return [(p, CATEGORY[p], _evidence(p, f, at)) for p in problems]
    return []


def predict(record: RunRecord) -> set[str]:
    return {category for _, category, _ in explain(record)}
