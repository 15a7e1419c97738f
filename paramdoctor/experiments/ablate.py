"""Ablation: which ingredients of a recipe matter, measured against seed noise.

A recipe (a :class:`TrainConfig`) is trained as it is (``full``) and once per
ingredient with that ingredient turned off, each over the same K seeds
(``seed``, ``seed+1``, ...). One difference between two single runs says
little: seeds alone move the best validation metric. So each variant is
compared with the full recipe *paired on shared seeds*: the mean of the
per-seed differences, its 95% confidence interval from the t distribution,
and the p-value of the paired t-test (``scipy.stats.ttest_rel``). An
ingredient "matters" only when that interval excludes 0; otherwise its effect
is "within noise". With fewer than 2 seeds there is no interval.

The ingredients and what "off" means:

=================  ===============================================  ======================================
ingredient         off value                                        a no-op (skipped) when the base has
=================  ===============================================  ======================================
augment            ``data.augment=false``                           augment already false
weight_decay       ``optimizer.weight_decay=0``                     weight_decay 0
schedule           ``scheduler.name=constant``, warmup 0            constant with no warmup
warmup             ``scheduler.warmup_epochs=0``                    no warmup
discriminative_lr  ``optimizer.backbone_lr=optimizer.lr``           backbone LR already equal to lr
early_stopping     ``early_stopping.enabled=false``                 early stopping already off
label_smoothing    ``trainer.label_smoothing=0``                    label_smoothing 0
gradient_clip      ``trainer.gradient_clip_val=null``               no clipping
=================  ===============================================  ======================================

Every run is an MLflow child (``mlflow.parentRunId``) of one parent run
tagged ``paramdoctor.ablation=true``; each child carries
``paramdoctor.ablation.variant`` (``full`` or the ingredient) and
``paramdoctor.ablation.seed``. With ``workers > 1`` the runs train in
parallel worker processes (spawn start method, each one calls ``fit``).

The JSON object (``AblationResult.to_dict``; ``paramdoctor ablate --json``,
``paramdoctor/ablation.json`` in the parent run)::

    {"schema_version": 1, "parent_run_id": str, "experiment": str, "base": str,
     "monitor": "val/acc"|"val/loss", "mode": "max"|"min", "seeds": [int],
     "test": "paired t-test (scipy.stats.ttest_rel); 95% CI of the mean difference from the t distribution",
     "skipped": [{"ingredient": str, "reason": str}],
     "variants": [{"name": "full"|ingredient, "off": str|null,
                   "runs": [{"seed": int, "run_id": str, "status": str, "best_value": float|null,
                             "best_epoch": int|null, "time_to_best_s": float|null}],
                   "best": {"mean": float|null, "std": float|null, "n": int},
                   "best_epoch": {"mean", "std", "n"}, "time_to_best_s": {"mean", "std", "n"},
                   "delta": null (full) | {"mean": float|null, "ci_low": float|null, "ci_high": float|null,
                             "p_value": float|null, "n": int, "verdict": "matters"|"within noise"|"needs >= 2 seeds",
                             "effect": "hurts"|"helps"|null}}]}

``delta`` is variant minus full on the seeds both have; ``effect`` says
whether turning the ingredient off made the monitored metric worse
(``hurts``) or better (``helps``), given only when the verdict is
``matters``; ``std`` is the sample standard deviation (null for n=1).
"""

from __future__ import annotations

import math
import multiprocessing
import secrets
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from paramdoctor import keys
from paramdoctor.config import TrainConfig, effective_backbone_lr, to_tree, validate
from paramdoctor.errors import InputError

TAG_ABLATION = "paramdoctor.ablation"
TAG_VARIANT = "paramdoctor.ablation.variant"
TAG_SEED = "paramdoctor.ablation.seed"
FULL = "full"
TEST_NAME = "paired t-test (scipy.stats.ttest_rel); 95% CI of the mean difference from the t distribution"
MATTERS, WITHIN_NOISE, NEEDS_SEEDS = "matters", "within noise", "needs >= 2 seeds"
CONFIDENCE = 0.95


# --- ingredients -----------------------------------------------------------------------


@dataclass(frozen=True)
class Ingredient:
    name: str
    off: str  # what "off" sets, as the user reads it
    noop_when: str  # why it is skipped for a base that already lacks it
    turn_off: Callable[[dict[str, Any], TrainConfig], None]  # edits the config tree in place
    is_noop: Callable[[TrainConfig], bool]


def _set(section: str, **values: Any) -> Callable[[dict[str, Any], TrainConfig], None]:
    def apply(tree: dict[str, Any], _: TrainConfig) -> None:
        tree[section].update(values)

    return apply


def _backbone_equal(tree: dict[str, Any], base: TrainConfig) -> None:
    tree["optimizer"]["backbone_lr"] = base.optimizer.lr


INGREDIENTS: dict[str, Ingredient] = {
    i.name: i
    for i in (
        Ingredient("augment", "data.augment=false", "augment is already false", _set("data", augment=False),
                   lambda c: not c.data.augment),
        Ingredient("weight_decay", "optimizer.weight_decay=0", "weight_decay is already 0",
                   _set("optimizer", weight_decay=0.0), lambda c: c.optimizer.weight_decay == 0),
        Ingredient("schedule", "scheduler.name=constant, warmup 0", "the schedule is already constant without warmup",
                   _set("scheduler", name="constant", warmup_epochs=0.0),
                   lambda c: c.scheduler.name == "constant" and c.scheduler.warmup_epochs == 0),
        Ingredient("warmup", "scheduler.warmup_epochs=0", "the base has no warmup",
                   _set("scheduler", warmup_epochs=0.0), lambda c: c.scheduler.warmup_epochs == 0),
        Ingredient("discriminative_lr", "optimizer.backbone_lr=optimizer.lr", "the backbone already trains at optimizer.lr",
                   _backbone_equal, lambda c: effective_backbone_lr(c) == c.optimizer.lr),
        Ingredient("early_stopping", "early_stopping.enabled=false", "early stopping is already off",
                   _set("early_stopping", enabled=False), lambda c: not c.early_stopping.enabled),
        Ingredient("label_smoothing", "trainer.label_smoothing=0", "label_smoothing is already 0",
                   _set("trainer", label_smoothing=0.0), lambda c: c.trainer.label_smoothing == 0),
        Ingredient("gradient_clip", "trainer.gradient_clip_val=null", "the base does not clip gradients",
                   _set("trainer", gradient_clip_val=None), lambda c: c.trainer.gradient_clip_val is None),
    )
}


@dataclass(frozen=True)
class Variant:
    name: str
    off: str | None
    config: TrainConfig


def parse_drop(text: str | None) -> list[str] | None:
    """``"augment,weight_decay"`` -> names; None for the default (every ingredient the base has)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in INGREDIENTS]
    if unknown or not names:
        what = f"unknown ingredient {unknown[0]!r}" if unknown else "no ingredient named"
        raise InputError(f"--drop: {what}; valid ones: {', '.join(INGREDIENTS)}")
    return list(dict.fromkeys(names))


def plan(base: TrainConfig, drop: list[str] | None) -> tuple[list[Variant], list[dict[str, str]]]:
    """The variants to train (``full`` first) and the ingredients skipped as no-ops for ``base``."""
    variants = [Variant(FULL, None, base)]
    skipped: list[dict[str, str]] = []
    for name in drop if drop is not None else list(INGREDIENTS):
        ing = INGREDIENTS[name]
        if ing.is_noop(base):
            skipped.append({"ingredient": name, "reason": f"no-op: {ing.noop_when}"})
            continue
        tree = to_tree(base)
        ing.turn_off(tree, base)
        variants.append(Variant(name, ing.off, validate(tree, where=f"ablation variant {name}")))
    return variants, skipped


# --- statistics --------------------------------------------------------------------------


def mean_std(values: list[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation of the finite values (std null for n < 2)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"mean": mean, "std": std, "n": len(xs)}


def paired_delta(full: dict[int, float | None], variant: dict[int, float | None], mode: str = "max") -> dict[str, Any]:
    """Variant minus full, paired on the seeds both have a finite value for.

    Mean difference, its 95% CI (t distribution, n-1 degrees of freedom), the
    p-value of ``scipy.stats.ttest_rel`` and the verdict: ``matters`` only when
    the CI excludes 0.
    """
    import numpy as np
    from scipy import stats

    seeds = [s for s in full if s in variant and _finite(full[s]) and _finite(variant[s])]
    a = np.array([variant[s] for s in seeds], dtype=float)
    b = np.array([full[s] for s in seeds], dtype=float)
    n = len(seeds)
    out: dict[str, Any] = {"mean": None, "ci_low": None, "ci_high": None, "p_value": None, "n": n,
                           "verdict": NEEDS_SEEDS, "effect": None}
    if n == 0:
        return out
    d = a - b
    out["mean"] = float(d.mean())
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    if sd == 0.0:  # every seed moved by the same amount: no spread to test against
        out["p_value"] = 1.0 if out["mean"] == 0.0 else 0.0
    else:
        out["p_value"] = float(stats.ttest_rel(a, b).pvalue)
    matters = out["ci_low"] > 0 or out["ci_high"] < 0
    out["verdict"] = MATTERS if matters else WITHIN_NOISE
    if matters:
        better = out["mean"] > 0 if mode == "max" else out["mean"] < 0
        out["effect"] = "helps" if better else "hurts"
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def time_to_best(history: list[dict[str, float]], best_epoch: int | None) -> float | None:
    """Seconds of training up to and including the best epoch (sum of ``epoch/time_s``)."""
    if best_epoch is None:
        return None
    times = [row.get(keys.EPOCH_TIME) for row in history if row.get("epoch", math.inf) <= best_epoch]
    return float(sum(t for t in times if _finite(t))) if times else None


# --- running -----------------------------------------------------------------------------


@dataclass
class RunOutcome:
    variant: str
    seed: int
    run_id: str
    status: str
    best_value: float | None
    best_epoch: int | None
    time_to_best_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "run_id": self.run_id, "status": self.status, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "time_to_best_s": self.time_to_best_s}


@dataclass
class AblationResult:
    parent_run_id: str
    experiment: str
    base: str
    monitor: str
    mode: str
    seeds: list[int]
    variants: list[Variant]
    skipped: list[dict[str, str]]
    outcomes: list[RunOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        by_variant: dict[str, dict[int, RunOutcome]] = {}
        for o in self.outcomes:
            by_variant.setdefault(o.variant, {})[o.seed] = o
        full = {s: o.best_value for s, o in by_variant.get(FULL, {}).items()}
        rows = []
        for v in self.variants:
            runs = [by_variant.get(v.name, {})[s] for s in self.seeds if s in by_variant.get(v.name, {})]
            rows.append({
                "name": v.name,
                "off": v.off,
                "runs": [r.to_dict() for r in runs],
                "best": mean_std([r.best_value for r in runs]),
                "best_epoch": mean_std([r.best_epoch for r in runs]),
                "time_to_best_s": mean_std([r.time_to_best_s for r in runs]),
                "delta": None if v.name == FULL else paired_delta(full, {r.seed: r.best_value for r in runs}, self.mode),
            })
        return {"schema_version": 1, "parent_run_id": self.parent_run_id, "experiment": self.experiment,
                "base": self.base, "monitor": self.monitor, "mode": self.mode, "seeds": list(self.seeds),
                "test": TEST_NAME, "skipped": list(self.skipped), "variants": rows}


def _child_config(variant: Variant, seed: int, parent_name: str) -> TrainConfig:
    tree = to_tree(variant.config)
    tree["seed"] = seed
    tree["experiment"]["run_name"] = f"{parent_name}-{variant.name}-seed{seed}"
    return validate(tree, where=f"ablation variant {variant.name}")


def train_one(tree: dict[str, Any], parent_run_id: str, variant: str, seed: int) -> RunOutcome:
    """Train one child run; top-level so spawn workers can import it."""
    from paramdoctor.training import fit

    config = validate(tree, where=f"ablation variant {variant}")
    result = fit(config, parent_run_id=parent_run_id,
                 extra_tags={TAG_VARIANT: variant, TAG_SEED: str(seed)})
    best = result.best_value if _finite(result.best_value) else None
    return RunOutcome(variant, seed, result.run_id, result.status, best, result.best_epoch,
                      time_to_best(result.history, result.best_epoch))


def run_ablation(
    base: TrainConfig,
    variants: list[Variant],
    skipped: list[dict[str, str]],
    *,
    seeds: int = 3,
    workers: int = 1,
    base_label: str = "defaults",
    on_outcome: Callable[[RunOutcome], None] | None = None,
    picture: str | Path = "ablation.png",
) -> AblationResult:
    """Train every variant over ``seeds`` seeds as children of one parent run; log the chart and JSON to it.

    Ctrl-C ends the run in flight as KILLED (``fit`` does that), marks the
    parent KILLED and re-raises; runs finished so far stay in MLflow.
    """
    import json

    from paramdoctor.config import dump_yaml
    from paramdoctor.report import jsonable
    from paramdoctor.tracking import start_run

    seed_list = [base.seed + i for i in range(seeds)]
    parent_name = f"ablate-{base.data.dataset}-{base.model.name}-{secrets.token_hex(3)}"
    jobs = [(v, s) for v in variants for s in seed_list]
    tags = {TAG_ABLATION: "true", keys.TAG_MONITOR: base.early_stopping.monitor,
            keys.TAG_MODE: base.early_stopping.mode}
    params = {"ablation.seeds": seeds, "ablation.workers": workers, "ablation.base": base_label,
              "ablation.variants": ",".join(v.name for v in variants),
              "ablation.skipped": ",".join(s["ingredient"] for s in skipped) or "none"}
    with start_run(experiment=base.experiment.name, run_name=parent_name, params=params, tags=tags,
                   artifacts_text={"config.yaml": dump_yaml(base)}) as parent:
        result = AblationResult(parent.run_id, base.experiment.name, base_label, base.early_stopping.monitor,
                                base.early_stopping.mode, seed_list, variants, skipped)

        def done(outcome: RunOutcome) -> None:
            result.outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)

        args = [(to_tree(_child_config(v, s, parent_name)), parent.run_id, v.name, s) for v, s in jobs]
        if workers <= 1:
            for a in args:
                done(train_one(*a))
        else:
            _run_parallel(args, workers, done)
        payload = result.to_dict()
        path = plot_ablation(payload, picture)
        parent.log_artifact(str(path), artifact_path="paramdoctor")
        parent.log_text(json.dumps(jsonable(payload), indent=2, allow_nan=False), "paramdoctor/ablation.json")
    return result


def _run_parallel(args: list[tuple], workers: int, done: Callable[[RunOutcome], None]) -> None:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(train_one, *a) for a in args}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # workers got Ctrl-C too: their runs end KILLED
        raise
    pool.shutdown(wait=True)


# --- the picture ------------------------------------------------------------------------


def plot_ablation(payload: dict[str, Any], path: str | Path, *, dpi: int = 100) -> Path:
    """Bars of the mean best metric per variant with ± std error bars; verdicts under the names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = payload["variants"]
    fig = Figure(figsize=(max(5.0, 1.2 * len(rows) + 2), 4.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    means = [r["best"]["mean"] if r["best"]["mean"] is not None else math.nan for r in rows]
    stds = [r["best"]["std"] or 0.0 for r in rows]
    colours = []
    for r in rows:
        verdict = (r["delta"] or {}).get("verdict")
        colours.append("#1f77b4" if r["name"] == FULL else "#d62728" if verdict == MATTERS else "#7f7f7f")
    x = list(range(len(rows)))
    ax.bar(x, means, yerr=stds, capsize=5, color=colours)
    labels = [r["name"] if r["name"] == FULL else f"−{r['name']}\n{r['delta']['verdict']}" for r in rows]
    ax.set_xticks(x, labels, fontsize=8)
    finite = [(m - s, m + s) for m, s in zip(means, stds) if math.isfinite(m)]
    if finite:
        lo, hi = min(a for a, _ in finite), max(b for _, b in finite)
        pad = max((hi - lo) * 0.5, 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
    full_mean = means[0] if rows and rows[0]["name"] == FULL else math.nan
    if math.isfinite(full_mean):
        ax.axhline(full_mean, color="#1f77b4", linestyle="--", linewidth=0.8)
    ax.set_ylabel(f"best {payload['monitor']} (mean ± std, {len(payload['seeds'])} seeds)")
    ax.set_title("ablation: each ingredient turned off", fontsize=10)
    fig.savefig(path)
    return path


def require_config(record: Any, ref: str) -> dict[str, Any]:
    """A resolved run's paramdoctor config tree, or one line saying why there is none."""
    if not record.config:
        raise InputError(
            f"run {ref!r} has no paramdoctor config to ablate (curves from {record.source}); "
            "give a paramdoctor run or a CONFIG.yaml"
        )
    return dict(record.config)
