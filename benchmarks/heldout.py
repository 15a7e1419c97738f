"""Held-out detection: every corpus scenario retrained with seeds the rules were never tuned on, scored like the report card.

The shipped corpus (``sample_runs/``) is the set the rule thresholds were
calibrated on, so its report card measures agreement, not accuracy. This
benchmark takes each scenario in ``sample_runs/scenarios.yaml`` (the same
deliberate defect, the same ``fire``/``may_fire`` expectations), shifts its
seed by ``--offset`` (default 1000: different initial weights, data split,
subset, augmentation and batch order), trains it with ``paramdoctor.training.fit``
into a scratch MLflow store, and scores the rules on the new runs with the
report card (``paramdoctor.engine.report_card.score``): precision, recall and
F1 per rule, every miss and false alarm.

A scenario that fine-tunes an earlier one (``from_run``) fine-tunes that
scenario's held-out run. A scenario whose expectations name a rule that is not
loaded (written ahead of its rule) is listed and left out. It trains the whole
corpus (80-90 s for 39 scenarios on a 2-core AMD EPYC, several minutes on a
loaded machine), so it is a benchmark, not a test::

    .venv/bin/python benchmarks/heldout.py
    .venv/bin/python benchmarks/heldout.py --offset 2000 --scenarios healthy_seed1 overfit_small_subset --out heldout.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_ROOT, machine_line, reproduce_line, scratch_store, set_threads  # noqa: E402

EXPERIMENT = "heldout"


def load_scenarios(samples_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(overrides common to every scenario, the scenarios) from ``scenarios.yaml``."""
    import yaml

    spec = yaml.safe_load((samples_dir / "scenarios.yaml").read_text()) or {}
    return list(spec.get("common") or []), list(spec.get("scenarios") or [])


def shifted_seed(overrides: list[str], offset: int) -> list[str]:
    """The overrides with ``seed=N`` replaced by ``seed=N+offset`` (the default seed when none is given)."""
    from paramdoctor.config.schema import TrainConfig

    seed = TrainConfig().seed
    kept = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "seed":
            seed = int(value)
        else:
            kept.append(item)
    return [*kept, f"seed={seed + offset}"]


def split_by_known_rules(scenarios: list[dict[str, Any]], rules) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]]:
    """(scenarios whose ``fire``/``may_fire`` name only loaded rules, [(name, unknown codes)] of the rest).

    A scenario written for a rule that has not landed yet cannot be scored (the
    report card rejects an unknown name), so it is left out and listed instead
    of aborting the whole benchmark.
    """
    known = {r.code for r in rules} | {r.slug for r in rules}
    kept, skipped = [], []
    for sc in scenarios:
        unknown = sorted({c for key in ("fire", "may_fire") for c in (sc.get(key) or []) if c not in known})
        if unknown:
            skipped.append((sc["name"], unknown))
        else:
            kept.append(sc)
    return kept, skipped


class HeldOut:
    """Trains held-out runs of scenarios, each ``from_run`` source once, on demand."""

    def __init__(self, common: list[str], scenarios: list[dict[str, Any]], offset: int, device: str | None) -> None:
        self.common = common
        self.by_name = {sc["name"]: sc for sc in scenarios}
        self.offset = offset
        self.device = device
        self.run_ids: dict[str, str] = {}
        self.results: dict[str, Any] = {}

    def train(self, name: str):
        """The finished training result of scenario ``name``'s held-out run."""
        from paramdoctor.config import load_config
        from paramdoctor.training import fit

        if name in self.results:
            return self.results[name]
        sc = self.by_name[name]
        overrides = [*self.common, *shifted_seed(list(sc.get("overrides") or []), self.offset)]
        overrides += [f"experiment.name={EXPERIMENT}", f"experiment.run_name={name}-heldout"]
        if sc.get("from_run"):
            source = self.train(sc["from_run"])
            overrides.append(f"model.weights=runs:/{source.run_id}/checkpoints/best.pt")
        if self.device is not None:
            overrides.append(f"trainer.device={self.device}")
        result = fit(load_config(None, overrides))
        self.results[name] = result
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=[], metavar="NAME", help="only these scenarios (default: all)")
    parser.add_argument(
        "--samples-dir", type=Path, default=REPO_ROOT / "sample_runs", help="where scenarios.yaml is (default: the repo's sample_runs)"
    )
    parser.add_argument("--offset", type=int, default=1000, help="added to every scenario's seed (default 1000)")
    parser.add_argument("--out", type=Path, help="also write the report card as JSON here")
    parser.add_argument("--store", type=Path, help="keep the scratch MLflow store in this folder (default: a temporary one, removed)")
    parser.add_argument("--device", help="train on this device instead of each config's trainer.device (e.g. cuda)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    args = parser.parse_args(argv)
    raw_argv = list(sys.argv[1:] if argv is None else argv)

    from rich.console import Console

    from paramdoctor.cli.rules_test import render_report_card, report_card_json
    from paramdoctor.engine import load_rules
    from paramdoctor.engine.report_card import Expectation, Sample, score
    from paramdoctor.sources import record_from_mlflow

    common, scenarios = load_scenarios(args.samples_dir.resolve())
    unknown = sorted(set(args.scenarios) - {sc["name"] for sc in scenarios})
    if unknown:
        print(f"error: no scenario named {', '.join(unknown)} in {args.samples_dir / 'scenarios.yaml'}", file=sys.stderr)
        return 2
    chosen = [sc for sc in scenarios if not args.scenarios or sc["name"] in args.scenarios]
    rules = load_rules()
    chosen, skipped = split_by_known_rules(chosen, rules)
    for name, unknown_codes in skipped:
        print(f"{name}: skipped, it expects {', '.join(unknown_codes)}, which no loaded rule has", file=sys.stderr, flush=True)
    out = args.out.resolve() if args.out else None
    set_threads(args.threads)
    samples: list[Sample] = []
    t0 = time.perf_counter()
    with scratch_store(args.store):
        held = HeldOut(common, scenarios, args.offset, args.device)
        for sc in chosen:
            t1 = time.perf_counter()
            result = held.train(sc["name"])
            expect = Expectation(what=sc.get("what", ""), fire=list(sc.get("fire") or []), may_fire=list(sc.get("may_fire") or []), run_id=result.run_id)
            samples.append(Sample(name=sc["name"], record=record_from_mlflow(result.run_id), expect=expect))
            print(f"{sc['name']}: {result.status} ({time.perf_counter() - t1:.0f} s)", file=sys.stderr, flush=True)
    card = score(rules, samples)
    print(machine_line(args.device))
    print(reproduce_line("heldout.py", raw_argv))
    print(f"{len(samples)} held-out runs (seed + {args.offset}), {time.perf_counter() - t0:.0f} s")
    if skipped:
        print(f"not run ({len(skipped)}, their rules are not loaded yet): " + ", ".join(f"{n} ({', '.join(c)})" for n, c in skipped))
    render_report_card(card, Console(highlight=False, width=140))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report_card_json(card) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
