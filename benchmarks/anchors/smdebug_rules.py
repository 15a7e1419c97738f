"""Anchor: Amazon SageMaker Debugger built-in rules, at their published defaults, on a run's curves.

Sources read
------------
* awsdocs/amazon-sagemaker-developer-guide, ``doc_source/debugger-built-in-rules.md``
  at commit 29f327659f152f8101d9b47ba08bc9d1c5ebe38a (2023-02-27, the last commit
  holding the page; the repository was emptied in 1a9c31ec): each rule's
  description and parameter table with its default values.
* awslabs/sagemaker-debugger-rulesconfig, ``smdebug_rulesconfig/debugger_rules/rule_config_jsons/ruleConfigs.json``
  at afeb29241c518454e617fa04d54f908c8196cfe6: the built-in rule configurations
  (no parameter overrides; the ``losses``/``gradients``/``weights`` collections are
  saved with ``save_interval: 500``).
* awslabs/sagemaker-debugger at 3b82de312a404a0caf64c6cb860b584fac8b5163:
  ``smdebug/core/save_config.py`` (``DEFAULT_SAVE_CONFIG_INTERVAL = 500``, a step
  is saved when ``step % save_interval == 0``), ``docs/analysis.md`` (the
  "simplified" VanishingGradient rule: mean of absolute gradient values below
  the threshold), and, in history, ``sagemaker-docs/FirstPartyRules.md`` and
  ``tests/analysis/rules/test_loss_not_decreasing.py`` at bb14a44^
  (d6c0d02a401e35d9f7a354aafa271e93478c0609), the last commit before the
  first-party rules were removed ("Remove 1P rules (#406)").

The rule implementations themselves (``smdebug.rules.generic`` / the
``smdebug_rules`` package) were never published: git history of
awslabs/sagemaker-debugger has no ``class LossNotDecreasing``/``Overfit``/``Overtraining``,
and the smdebug 1.0.34 wheel ships only ``smdebug/rules/{rule,rule_invoker,req_tensors}.py``
and actions. The rules run inside AWS's rule-evaluator containers. Each check
below therefore implements the *documented* condition; where the documentation
leaves a choice open the docstring of the check says which reading is used.

How a run maps onto a SageMaker trial
-------------------------------------
The anchor models a job with all the rules below attached: the hook saves the
``losses`` collection (the PyTorch hook's default) and the ``gradients``
collection (VanishingGradient's configuration), both with
``save_interval=500``. From what a log holds:

* TRAIN-mode losses: ``step/loss`` at the steps such a hook saves (hook step
  s-1 is optimizer step s; ``_common.saved_steps`` takes the first logged point
  of each 500-step slot). Without ``step/loss``, ``train/loss`` thinned the same
  way (its x times ``steps_per_epoch`` for epoch-indexed runs; with no
  ``steps_per_epoch`` every epoch is taken as one saved step, at least
  ``num_steps`` after the previous). A run shorter than 501 steps therefore
  has one saved training loss, as its SageMaker job would.
* EVAL-mode losses: ``val/loss``, one saved step per evaluation (consecutive
  evaluations taken as at least ``num_steps`` eval steps apart).
* gradients: ``step/grad_norm`` and each ``telemetry/<group>/grad_norm``, thinned
  the same way. Only norms are logged, not the tensors.
* SageMaker ends a rule's evaluation when its condition is first met, so each
  check reports its first firing.
* A log that ends on a non-finite loss or gradient norm counts that last value
  as saved (ExplodingTensor): a NaN does not stop a SageMaker job, and NaN
  weights would have shown at its next save step.

Checks and defaults (category: what a user reads from the rule firing)
---------------------------------------------------------------------
LossNotDecreasing  num_steps=10, diff_percent=0.1, increase_threshold_percent=5,
                   mode not passed (EVAL losses, else TRAIN)                      -> lr_too_low
Overfit            start_step=0, patience=1, ratio_threshold=0.1                  -> overfitting
Overtraining       patience_train=5, patience_validation=10, delta=0.01           -> overtrained
VanishingGradient  threshold=1e-7                                                 -> gradients
ExplodingTensor    only_nan=False, all saved tensors                              -> diverged
UnchangedTensor    collection "losses", num_steps=3, rtol=1e-5, atol=1e-8, equal_nan=False -> lr_too_low
                   (no default target exists; this is the AWS documentation's example configuration)

Left out (need tensors or facts a curve record does not hold): WeightUpdateRatio
(weights at two saved steps, 500 steps apart by default; paramdoctor's
``update_ratio`` telemetry measures a single optimizer step, a different
quantity); DeadRelu,
PoorWeightInitialization, SaturatedActivation (activations); AllZero,
TensorVariance (raw tensors; TensorVariance also has no default thresholds);
ClassImbalance, Confusion, CheckInputImages, NLPSequenceRatio (labels,
predictions, inputs); SimilarAcrossRuns (a second trial); StalledTrainingRule
(wall-clock time between tensor emissions: a job-liveness check, no curve
property and no category); FeatureImportanceOverweight, TreeDepth,
CreateXgboostReport (XGBoost); all ProfilerRules (system metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from paramdoctor import keys
from paramdoctor.record import RunRecord, Series

from ._common import Finding, eval_rows, finite, fmt, saved_steps, series, steps_per_epoch, telemetry

NAME = "smdebug"
SAVE_INTERVAL = 500  # DEFAULT_SAVE_CONFIG_INTERVAL and the rulesconfig collections' save_interval

LOSS_NOT_DECREASING = {"num_steps": 10, "diff_percent": 0.1, "increase_threshold_percent": 5.0}
OVERFIT = {"start_step": 0, "patience": 1, "ratio_threshold": 0.1}
OVERTRAINING = {"patience_train": 5, "patience_validation": 10, "delta": 0.01}
VANISHING_GRADIENT = {"threshold": 1e-7}
EXPLODING_TENSOR = {"only_nan": False}
UNCHANGED_TENSOR = {"num_steps": 3, "rtol": 1e-5, "atol": 1e-8, "equal_nan": False}

# rule -> category, with the reason a user would read it that way
CATEGORY = {
    "LossNotDecreasing": "lr_too_low",  # "loss is not decreasing at an adequate rate": the slow/stalled-loss symptom (PD201)
    "Overfit": "overfitting",  # "detects if your model is being overfit ... comparing validation and training losses"
    "Overtraining": "overtrained",  # "the model ... does not improve anymore"; "can be avoided by early stopping"
    "VanishingGradient": "gradients",  # "gradients ... become extremely small or drop to a zero magnitude"
    "ExplodingTensor": "diverged",  # "tensors ... have non-finite values, either infinite or NaN"
    "UnchangedTensor": "lr_too_low",  # the loss "is no longer changing across steps": training stopped moving
}

CHECKS = tuple(CATEGORY)


@dataclass(frozen=True)
class _Saved:
    """Saved TRAIN-mode losses: hook-step positions (for ``num_steps``), values, and how to name each point."""

    pos: np.ndarray
    vals: np.ndarray
    label: str
    xs: np.ndarray
    x_unit: str

    def at(self, i: int) -> str:
        return f"{self.x_unit} {self.xs[i]:g}"


def _train_losses(record: RunRecord) -> _Saved | None:
    """TRAIN-mode saved losses (see the module docstring)."""
    sl = series(record, keys.STEP_LOSS)
    if sl is not None:
        saved = saved_steps(sl, SAVE_INTERVAL)
        if saved is None:
            return None
        return _Saved(saved.steps - 1, saved.values, f"step/loss (saved every {SAVE_INTERVAL} steps)", saved.steps, "step")
    s = series(record, keys.TRAIN_LOSS)
    if s is None:
        return None
    spe = steps_per_epoch(record)
    if record.x_unit == "epoch" and spe is None:  # every logged epoch one saved step, num_steps after the previous
        n = int(LOSS_NOT_DECREASING["num_steps"])
        return _Saved(np.arange(s.values.size, dtype=float) * n, s.values, "train/loss", s.steps, "epoch")
    steps = s.steps if record.x_unit == "step" else s.steps * spe
    saved = saved_steps(Series(steps, s.values), SAVE_INTERVAL)
    if saved is None:
        return None
    xs = saved.steps if record.x_unit == "step" else saved.steps / spe
    return _Saved(saved.steps - 1, saved.values, f"train/loss (thinned to every {SAVE_INTERVAL} steps)", xs, record.x_unit)


def _mode_losses(record: RunRecord) -> _Saved | None:
    """The losses LossNotDecreasing reads: with ``mode`` not passed it "checks in order ... mode.EVAL,
    then mode.TRAIN", so ``val/loss`` when the run has it, else the TRAIN-mode losses."""
    v = series(record, keys.VAL_LOSS)
    if v is not None:
        n = int(LOSS_NOT_DECREASING["num_steps"])
        return _Saved(np.arange(v.values.size, dtype=float) * n, v.values, "val/loss (EVAL mode)", v.steps, record.x_unit)
    return _train_losses(record)


def loss_not_decreasing(record: RunRecord) -> str | None:
    """LossNotDecreasing: the loss must fall by ``diff_percent`` over every ``num_steps``.

    At a saved step s the loss is compared with the loss at the newest saved step
    at least ``num_steps`` behind; after a check the next one comes at the first
    saved step at least ``num_steps`` later (the documentation's "at step 21 ...
    compared with step 9 ... the next step at which loss is checked is 33").
    Reading of the two percentages: a fall smaller than ``diff_percent`` fires
    (a flat loss too: the 2019 test fires on 0.30 vs 0.30); a rise is "allowed"
    up to ``increase_threshold_percent`` and fires beyond it. Points with a
    non-finite or zero baseline are not judged (ExplodingTensor covers them).
    The mode: EVAL first when not passed (see ``_mode_losses``); the parameter
    table's "Default value: GLOBAL" contradicts the text, which both the 2019
    and the 2023 documentation state.
    """
    saved = _mode_losses(record)
    if saved is None:
        return None
    pos, vals = saved.pos, saved.vals
    p = LOSS_NOT_DECREASING
    n = int(p["num_steps"])
    last_check = None
    for i in range(vals.size):
        if last_check is not None and pos[i] < last_check + n:
            continue
        back = np.nonzero(pos[:i] <= pos[i] - n)[0]
        if not back.size:
            continue
        j = int(back[-1])
        last_check = pos[i]
        base, now = float(vals[j]), float(vals[i])
        if not (math.isfinite(base) and math.isfinite(now)) or base == 0:
            continue
        fall = (base - now) / abs(base) * 100.0
        where = f"{saved.label}: {fmt(now)} at {saved.at(i)} vs {fmt(base)} at {saved.at(j)}"
        if 0 <= fall < p["diff_percent"]:
            return f"{where}: fell {fall:.3g}% (< diff_percent {p['diff_percent']:g}%)"
        if -fall > p["increase_threshold_percent"]:
            return f"{where}: rose {-fall:.3g}% (> increase_threshold_percent {p['increase_threshold_percent']:g}%)"
    return None


def overfit(record: RunRecord) -> str | None:
    """Overfit: (mean val loss - mean train loss) / mean train loss > ratio_threshold for ``patience`` evaluations.

    One EVAL-mode step per evaluation; the training loss is the training mean
    logged at or before it (the mean of step/loss since the previous evaluation
    when no train/loss is logged). Evaluations with a non-positive or
    non-finite training loss are not judged.
    """
    p = OVERFIT
    run = 0
    for row in eval_rows(record):
        if row.x < p["start_step"] or not (finite(row.val_loss) and finite(row.train_loss)) or row.train_loss <= 0:
            continue
        ratio = (row.val_loss - row.train_loss) / row.train_loss
        run = run + 1 if ratio > p["ratio_threshold"] else 0
        if run >= p["patience"]:
            return (f"{record.x_unit} {row.x:g}: val loss {fmt(row.val_loss)} vs train loss {fmt(row.train_loss)}, "
                    f"(val-train)/train = {ratio:.3g} > ratio_threshold {p['ratio_threshold']:g} for {run} evaluation(s) (patience {p['patience']})")
    return None


def _no_improvement(xs: np.ndarray, vals: np.ndarray, patience: int, delta: float) -> tuple[float, float, int] | None:
    """First (x, best, waited) where ``patience`` points passed without beating the best by ``delta``."""
    best = None
    wait = 0
    for x, v in zip(xs.tolist(), vals.tolist()):
        if best is None:
            if math.isfinite(v):
                best = v
            continue
        if v < best - delta:  # NaN is never an improvement
            best, wait = v, 0
        else:
            wait += 1
        if wait >= patience:
            return x, best, wait
    return None


def overtraining(record: RunRecord) -> str | None:
    """Overtraining: training loss not improved by ``delta`` for ``patience_train`` saved steps,
    or validation loss not improved by ``delta`` for ``patience_validation`` evaluations.

    Reading: either patience running out fires (the documentation gives each
    loss its own patience and says the rule determines "if the model is not
    improving"); ``delta`` is an absolute improvement in loss units.
    """
    p = OVERTRAINING
    parts = []
    saved = _train_losses(record)
    if saved is not None:
        hit = _no_improvement(saved.xs, saved.vals, int(p["patience_train"]), p["delta"])
        if hit is not None:
            parts.append(f"{saved.label} not below best {fmt(hit[1])} - {p['delta']:g} for {hit[2]} saved points "
                         f"(patience_train {p['patience_train']}) by {saved.x_unit} {hit[0]:g}")
    v = series(record, keys.VAL_LOSS)
    if v is not None:
        hit = _no_improvement(v.steps, v.values, int(p["patience_validation"]), p["delta"])
        if hit is not None:
            parts.append(f"val/loss not below best {fmt(hit[1])} - {p['delta']:g} for {hit[2]} evaluations "
                         f"(patience_validation {p['patience_validation']}) by {record.x_unit} {hit[0]:g}")
    return "; ".join(parts) or None


def _gradient_sources(record: RunRecord) -> list[tuple[str, Series]]:
    out: list[tuple[str, Series]] = []
    g = saved_steps(series(record, keys.STEP_GRAD_NORM), SAVE_INTERVAL)
    if g is not None:
        out.append(("step/grad_norm", g))
    for group, s in sorted(telemetry(record, keys.TELEMETRY_GRAD_NORM).items()):
        t = saved_steps(s, SAVE_INTERVAL)
        if t is not None:
            out.append((f"telemetry/{group}/grad_norm", t))
    return out


def vanishing_gradient(record: RunRecord) -> str | None:
    """VanishingGradient: mean |gradient| of a saved gradient tensor below ``threshold``.

    Reduced: only L2 norms are logged. mean|g| <= ||g||_2, so a norm below the
    threshold proves the documented condition; a larger norm cannot rule it
    out, so this fires on a subset of the runs the real rule would.
    """
    t = VANISHING_GRADIENT["threshold"]
    for label, s in _gradient_sources(record):
        low = np.nonzero(np.isfinite(s.values) & (s.values < t))[0]
        if low.size:
            i = int(low[0])
            return f"{label} = {fmt(float(s.values[i]))} at step {s.steps[i]:g} (< threshold {t:g}; a norm bounds mean |g| from above)"
    return None


def exploding_tensor(record: RunRecord) -> str | None:
    """ExplodingTensor: any saved tensor (losses, gradients) holds NaN or, with only_nan=False, infinity.

    A log that ends on a non-finite value counts that value as saved: NaN
    weights stay NaN, so the job (which a NaN does not stop) would have saved
    it at its next save step; the log only ended because another guard stopped it.
    """
    only_nan = EXPLODING_TENSOR["only_nan"]

    def bad(vals: np.ndarray) -> np.ndarray:
        return np.isnan(vals) if only_nan else ~np.isfinite(vals)

    sources: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    saved = _train_losses(record)
    if saved is not None:
        sources.append((saved.label, saved.xs, saved.vals, saved.x_unit))
    v = series(record, keys.VAL_LOSS)
    if v is not None:
        sources.append(("val/loss", v.steps, v.values, record.x_unit))
    for label, s in _gradient_sources(record):
        sources.append((label, s.steps, s.values, "step"))
    step_loss = series(record, keys.STEP_LOSS)
    raw = [(keys.STEP_LOSS, step_loss), (keys.TRAIN_LOSS, None if step_loss else series(record, keys.TRAIN_LOSS))]
    raw.append((keys.STEP_GRAD_NORM, series(record, keys.STEP_GRAD_NORM)))
    raw += [(keys.telemetry(g, keys.TELEMETRY_GRAD_NORM), s) for g, s in sorted(telemetry(record, keys.TELEMETRY_GRAD_NORM).items())]
    for key, s in raw:
        if s is not None and bad(s.values[-1:]).any():
            where = record.x_unit if key == keys.TRAIN_LOSS else "step"
            sources.append((f"{key} (last logged value)", s.steps[-1:], s.values[-1:], where))
    for label, xs, vals, where in sources:
        hit = bad(vals)
        if hit.any():
            i = int(np.nonzero(hit)[0][0])
            return f"{label} is {vals[i]} at {where} {xs[i]:g} ({int(hit.sum())} non-finite saved values)"
    return None


def unchanged_tensor(record: RunRecord) -> str | None:
    """UnchangedTensor on the ``losses`` collection: the last ``num_steps`` saved losses are allclose."""
    saved = _train_losses(record)
    if saved is None:
        return None
    vals = saved.vals
    p = UNCHANGED_TENSOR
    n = int(p["num_steps"])
    for i in range(n - 1, vals.size):
        window = vals[i - n + 1 : i + 1]
        if all(np.allclose(window[k], window[-1], rtol=p["rtol"], atol=p["atol"], equal_nan=p["equal_nan"]) for k in range(n - 1)):
            shown = ", ".join(fmt(float(v)) for v in window)
            return (f"{saved.label} unchanged over {n} saved points ending at {saved.at(i)}: {shown} "
                    f"(np.allclose rtol {p['rtol']:g}, atol {p['atol']:g})")
    return None


_RUNNERS = {
    "LossNotDecreasing": loss_not_decreasing,
    "Overfit": overfit,
    "Overtraining": overtraining,
    "VanishingGradient": vanishing_gradient,
    "ExplodingTensor": exploding_tensor,
    "UnchangedTensor": unchanged_tensor,
}


def explain(record: RunRecord) -> list[Finding]:
    """Every rule that fires: (rule, category, evidence)."""
    out: list[Finding] = []
    for name, run in _RUNNERS.items():
        evidence = run(record)
        if evidence:
            out.append((name, CATEGORY[name], evidence))
    return out


def predict(record: RunRecord) -> set[str]:
    return {category for _, category, _ in explain(record)}
