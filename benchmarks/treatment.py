"""Does the prescription cure? Train every sick sample's prescribed next config and diagnose it again.

For every pathological sample in ``sample_runs/`` (a non-empty ``fire`` list
in its ``expect.yaml``):

1. read its ``config.yaml`` and ``run.json`` and diagnose it with the built-in
   rules (``paramdoctor.engine.diagnose``, the prescription starting from
   ``config.yaml``);
2. train the prescribed next config (``paramdoctor.training.fit``) into a
   scratch MLflow store (a temporary SQLite store, ``MLFLOW_TRACKING_URI``);
3. read the new run back (``paramdoctor.sources.record_from_mlflow``) and
   diagnose it again;
4. record whether each expected finding cleared (the rule no longer fires),
   and the best value of the monitored validation metric (the diagnosis
   summary's ``best_value``, e.g. ``val/acc`` max) before and after.

A sample is *cured* when every expected finding cleared AND the best
validation metric improved; the target is at least 80% of sick samples cured.

One run per side is noisy: on digits' 360 validation images one image is
0.28 points of accuracy. ``--seeds N`` repeats both sides on N seeds (the
config's seed, +1, ..., +N-1): the original config is retrained on the extra
seeds (the stored sample stands for the first), the prescription is trained on
all N, a finding counts as cleared only when it cleared on every seed, and the
best values compared are the means over the seeds.

Samples that fine-tune an earlier sample's weights (``model.weights=runs:/...``)
need that run in the scratch store: the scenario's ``from_run`` sample
(``sample_runs/scenarios.yaml``) is trained first from its own config.yaml and
the weights URI is rewritten to the new run.

It trains (30-90 s per run on a loaded 2-core machine), so it is a benchmark,
not a test::

    .venv/bin/python benchmarks/treatment.py                          # every sick sample
    .venv/bin/python benchmarks/treatment.py --samples too_few_epochs --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_ROOT, machine_line, reproduce_line, scratch_store, set_threads  # noqa: E402

TARGET = 0.8
RUNS_PREFIX = "runs:/"
EXPERIMENT = "treatment"


@dataclass
class Treatment:
    """One sick sample: what the doctor said, what it prescribed, and what training the prescription did."""

    sample: str
    expected: list[str]  # rule codes the sample must fire (expect.yaml's fire)
    findings_before: list[str]
    prescription: list[str]  # "optimizer.lr: 1e-06 -> 1e-05 (PD201)"
    findings_after: list[str] = field(default_factory=list)
    cleared: dict[str, bool] = field(default_factory=dict)  # expected code -> no longer fires
    monitor: str | None = None
    mode: str | None = None
    best_before: float | None = None  # the mean over seeds with --seeds
    best_after: float | None = None
    best_before_runs: list[float | None] = field(default_factory=list)  # one per seed
    best_after_runs: list[float | None] = field(default_factory=list)
    improved: bool = False
    run_id: str | None = None
    run_status: str | None = None
    train_s: float = 0.0
    error: str | None = None  # why the treatment could not be trained or judged

    @property
    def all_cleared(self) -> bool:
        return bool(self.cleared) and all(self.cleared.values())

    @property
    def cured(self) -> bool:
        return self.error is None and self.all_cleared and self.improved

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "all_cleared": self.all_cleared, "cured": self.cured}


# --- the corpus ---------------------------------------------------------------------


def from_runs(samples_dir: Path) -> dict[str, str]:
    """Scenario name -> the sample whose weights it fine-tunes (``from_run`` in scenarios.yaml)."""
    import yaml

    path = samples_dir / "scenarios.yaml"
    if not path.is_file():
        return {}
    spec = yaml.safe_load(path.read_text()) or {}
    return {sc["name"]: sc["from_run"] for sc in spec.get("scenarios", []) if sc.get("from_run")}


def sick_samples(samples_dir: Path, names: list[str]) -> list:
    """The samples named (all when none) whose expect.yaml lists at least one rule in ``fire``."""
    from paramdoctor.engine.report_card import load_sample, load_samples

    samples = [load_sample(samples_dir / n) for n in names] if names else load_samples(samples_dir)
    return [s for s in samples if s.expect.fire]


def read_config_tree(folder: Path) -> dict[str, Any]:
    """A sample's config.yaml, validated, as a plain nested dict."""
    from paramdoctor.config import to_tree, validate
    from paramdoctor.config.loading import read_config_file

    path = folder / "config.yaml"
    return to_tree(validate(read_config_file(path), str(path)))


def rewrite_weights(tree: dict[str, Any], run_id: str) -> dict[str, Any]:
    """``runs:/<old id>/checkpoints/best.pt`` -> ``runs:/<run_id>/checkpoints/best.pt``."""
    weights = tree["model"]["weights"]
    artifact = weights[len(RUNS_PREFIX) :].strip("/").partition("/")[2] or "checkpoints/best.pt"
    return {**tree, "model": {**tree["model"], "weights": f"{RUNS_PREFIX}{run_id}/{artifact}"}}


# --- training in the scratch store -------------------------------------------------------


class Trainer:
    """Trains configs into the scratch store; trains each ``from_run`` source once, on demand."""

    def __init__(self, samples_dir: Path, device: str | None) -> None:
        self.samples_dir = samples_dir
        self.device = device
        self.from_run = from_runs(samples_dir)
        self.sources: dict[str, str] = {}  # source sample -> run id in the scratch store

    def prepare(self, name: str, tree: dict[str, Any]) -> dict[str, Any]:
        """The config ready to train here: the weights of an earlier run point into the scratch store."""
        weights = tree["model"].get("weights")
        if not (isinstance(weights, str) and weights.startswith(RUNS_PREFIX)):
            return tree
        source = self.from_run.get(name)
        if source is None:
            raise LookupError(f"{name}: model.weights={weights} but scenarios.yaml names no from_run for it")
        if source not in self.sources:
            source_tree = self.prepare(source, read_config_tree(self.samples_dir / source))
            self.sources[source] = self.train(source_tree, f"{source}-source").run_id
        return rewrite_weights(tree, self.sources[source])

    def train(self, tree: dict[str, Any], run_name: str):
        from paramdoctor.config import validate
        from paramdoctor.training import fit

        tree = {**tree, "experiment": {**tree.get("experiment", {}), "name": EXPERIMENT, "run_name": run_name}}
        if self.device is not None:
            tree = {**tree, "trainer": {**tree["trainer"], "device": self.device}}
        return fit(validate(tree, f"config of {run_name}"))


# --- one treatment ------------------------------------------------------------------------


def with_seed(tree: dict[str, Any], offset: int) -> dict[str, Any]:
    """The config tree with its seed shifted by ``offset``."""
    return {**tree, "seed": int(tree.get("seed", 42)) + offset}


def treat(sample, rules, trainer: Trainer, seeds: int = 1) -> Treatment:
    from paramdoctor.engine import diagnose
    from paramdoctor.engine.report_card import resolve_expectation
    from paramdoctor.errors import ParamDoctorError
    from paramdoctor.sources import record_from_mlflow

    expected = sorted(resolve_expectation(rules, sample)[0])
    base = read_config_tree(sample.path)
    try:
        base = trainer.prepare(sample.name, base)
    except (LookupError, ParamDoctorError) as exc:
        return Treatment(sample.name, expected, [], [], error=str(exc))
    before = diagnose(sample.record, rules, base_config=base)
    result = Treatment(
        sample=sample.name,
        expected=expected,
        findings_before=[f.code for f in before.findings],
        prescription=[f"{c.key}: {_show(c.old)} -> {_show(c.new)} ({c.rule})" for c in before.prescription.changes],
        monitor=before.summary.get("monitor"),
        mode=before.summary.get("mode"),
        best_before=_number(before.summary.get("best_value")),
    )
    if not before.prescription.changes:
        result.error = "no prescription: the diagnosis changes no config key"
        return result
    t0 = time.perf_counter()
    result.best_before_runs = [result.best_before]
    result.cleared = {code: True for code in expected}
    try:
        for k in range(seeds):
            fitted = trainer.train(with_seed(before.prescription.next_config, k), f"{sample.name}-treated-{k}")
            after = diagnose(record_from_mlflow(fitted.run_id), rules)
            fired_after = {f.code for f in after.findings}
            result.cleared = {code: ok and code not in fired_after for code, ok in result.cleared.items()}
            result.best_after_runs.append(_number(after.summary.get("best_value")))
            if k == 0:
                result.findings_after = [f.code for f in after.findings]
                result.run_id, result.run_status = fitted.run_id, fitted.status
            else:  # the original config on the same extra seed
                again = trainer.train(with_seed(base, k), f"{sample.name}-again-{k}")
                summary = diagnose(record_from_mlflow(again.run_id), rules).summary
                result.best_before_runs.append(_number(summary.get("best_value")))
    except ParamDoctorError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        result.train_s = round(time.perf_counter() - t0, 1)
    result.best_before = _mean(result.best_before_runs)
    result.best_after = _mean(result.best_after_runs)
    result.improved = _improved(result.best_before, result.best_after, result.mode or "max")
    return result


def _mean(values: list[float | None]) -> float | None:
    """The mean of the finite values (a diverged run has none); None when there are none."""
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def _improved(before: float | None, after: float | None, mode: str) -> bool:
    if after is None:
        return False
    if before is None:  # nothing finite before (a diverged run): any finite value is better
        return True
    return after > before if mode == "max" else after < before


def _number(value: Any) -> float | None:
    """A summary value as a finite float; None for missing, "nan" and infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _show(value: Any) -> str:
    return "null" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


# --- the report ---------------------------------------------------------------------------


def markdown(results: list[Treatment]) -> str:
    lines = [
        "| sample | findings | prescription | cleared? | best before -> after | improved? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        findings = ", ".join(f"**{c}**" if c in r.expected else c for c in r.findings_before) or "(none)"
        missing = [c for c in r.expected if c not in r.findings_before]
        if missing:
            findings += f" (expected {', '.join(missing)} did not fire)"
        prescription = "; ".join(r.prescription) or "-"
        if r.error is not None:
            lines.append(f"| {r.sample} | {findings} | {prescription} | error: {r.error} | - | - |")
            continue
        still = [c for c, ok in r.cleared.items() if not ok]
        cleared = "yes" if not still else f"no ({', '.join(still)} still fires)"
        best = f"{_fmt(r.best_before)} -> {_fmt(r.best_after)} ({r.monitor} {r.mode}"
        best += f", mean of {len(r.best_after_runs)} seeds)" if len(r.best_after_runs) > 1 else ")"
        improved = "yes" if r.improved else "no"
        lines.append(f"| {r.sample} | {findings} | {prescription} | {cleared} | {best} | {improved} |")
    return "\n".join(lines)


def totals(results: list[Treatment]) -> dict[str, Any]:
    n = len(results)
    cured = sum(r.cured for r in results)
    return {
        "sick_samples": n,
        "cleared": sum(r.error is None and r.all_cleared for r in results),
        "improved": sum(r.error is None and r.improved for r in results),
        "cured": cured,
        "errors": sum(r.error is not None for r in results),
        "cured_share": cured / n if n else None,
        "target": TARGET,
        "meets_target": bool(n) and cured / n >= TARGET,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", nargs="+", default=[], metavar="NAME", help="only these samples (default: every sick one)"
    )
    parser.add_argument(
        "--samples-dir", type=Path, default=REPO_ROOT / "sample_runs", help="the corpus (default: the repo's sample_runs)"
    )
    parser.add_argument("--out", type=Path, help="also write every result as JSON here")
    parser.add_argument(
        "--store", type=Path, help="keep the scratch MLflow store in this folder (default: a temporary one, removed)"
    )
    parser.add_argument("--device", help="train on this device instead of each config's trainer.device (e.g. cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument(
        "--seeds", type=int, default=1, help="seeds per side: retrain the original on extra seeds, compare mean best values (default 1)"
    )
    args = parser.parse_args(argv)
    raw_argv = list(sys.argv[1:] if argv is None else argv)

    from paramdoctor.engine import load_rules
    from paramdoctor.errors import ParamDoctorError

    samples_dir = args.samples_dir.resolve()
    out = args.out.resolve() if args.out else None
    try:
        rules = load_rules()
        samples = sick_samples(samples_dir, args.samples)
    except ParamDoctorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not samples:
        print("error: no sick samples (non-empty fire list) to treat", file=sys.stderr)
        return 2

    set_threads(args.threads)
    trainer = Trainer(samples_dir, args.device)
    results: list[Treatment] = []
    t0 = time.perf_counter()
    with scratch_store(args.store):
        for sample in samples:
            result = treat(sample, rules, trainer, seeds=max(1, args.seeds))
            results.append(result)
            status = "cured" if result.cured else ("error" if result.error else "not cured")
            print(f"{sample.name}: {status} ({result.train_s:.0f} s)", file=sys.stderr, flush=True)

    summary = totals(results)
    print(machine_line(args.device))
    print(reproduce_line("treatment.py", raw_argv))
    print()
    print(markdown(results))
    print()
    share = "-" if summary["cured_share"] is None else f"{summary['cured_share']:.0%}"
    print(
        f"cured (every expected finding cleared AND best validation metric improved): "
        f"{summary['cured']}/{summary['sick_samples']} = {share} (target >= {TARGET:.0%}); "
        f"cleared {summary['cleared']}, improved {summary['improved']}, errors {summary['errors']}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {"machine": machine_line(args.device), "totals": summary, "results": [r.to_dict() for r in results]}
        out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
