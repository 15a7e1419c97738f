"""Fuzz the CLI with the strategies of tests/cli/test_fuzz.py at larger budgets and count what breaks.

For each family of hostile input (argv, config files, key=value overrides,
rule files and --set, run exports and other tools' logs, model.weights
checkpoints, datasets on disk, YAML alias bombs) it runs N examples through
``paramdoctor.cli.app.main`` in-process (the alias family in a child process
with a time and memory limit), checks each against the CLI's contract
(documented exit code, one ``error:`` line on exit 2, no traceback, no run
left behind by a failed ``train``/``import``, nothing logged by ``--dry-run``)
and prints, per family, the examples run, the exit codes seen and
"N examples, K violations", then every distinct violation with how often it
happened and the shortest input that showed it.

Hypothesis runs derandomized (the same examples every time) without its
example database, and does not shrink: the repro shown is the shortest of the
examples that broke the same way. ``pytest tests/cli/test_fuzz.py`` shrinks
one failure per family to a minimal example.

    .venv/bin/python benchmarks/fuzz_counts.py                       # several minutes on 2 cores
    .venv/bin/python benchmarks/fuzz_counts.py --scale 0.1 --families argv,rules
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ensure_repo_on_path, machine_line, reproduce_line  # noqa: E402

ensure_repo_on_path()
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

#: Examples per family at --scale 1.
BUDGET = {
    "argv": 1500, "config": 600, "override": 1000, "rules": 500, "runfile": 600, "weights": 60, "data": 150, "alias": 30,
}


def run_family(family: str, examples: int, base: Path, stores, *, seed: int | None) -> list:
    """Run ``examples`` cases of ``family``; the outcomes."""
    from hypothesis import HealthCheck, Phase, example, given, settings

    from tests.cli import fuzz_strategies as fz

    outcomes = []
    subprocess_family = family in fz.SUBPROCESS_FAMILIES

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fz.STRATEGIES[family])
    def one(case) -> None:
        if subprocess_family:
            outcomes.append(fz.run_case_in_subprocess(case, base, stores, timeout=30))
        else:
            outcomes.append(fz.run_case(case, base, stores, capture.read, timeout=120))

    explicit = fz.explicit_examples(family) + (fz.explicit_examples("config-train") if family == "config" else [])
    for case in reversed(explicit):
        one = example(case)(one)
    if seed is not None:
        from hypothesis import seed as hypothesis_seed

        one = hypothesis_seed(seed)(one)
    with fz.FdCapture() as capture:
        one()
    return outcomes


def report(family: str, outcomes: list, seconds: float) -> tuple[str, list[str]]:
    """The family's summary row and its distinct violations."""
    from tests.cli.fuzz_strategies import signature

    codes = collections.Counter("raised" if o.exception and o.code is None else ("timeout" if o.timed_out else o.code)
                                for o in outcomes)
    broken = [o for o in outcomes if o.violations]
    groups: dict[str, list] = collections.defaultdict(list)
    for o in broken:
        for problem in o.violations:
            groups[signature(problem)].append((o, problem))
    seen = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))
    row = f"| {family} | {len(outcomes)} examples, {len(broken)} violations | {seen} | {len(groups)} | {seconds:.0f} s |"
    lines = []
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        o, problem = min(items, key=lambda item: len(item[0].case.repro(10_000)))
        lines.append(f"- [{family}] x{len(items)}: {problem[:300]}\n    repro: {o.case.repro(300)}")
    return row, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every family's budget (default 1)")
    parser.add_argument("--families", default=",".join(BUDGET), help=f"comma-separated subset of {','.join(BUDGET)}")
    parser.add_argument("--seed", type=int, default=None, help="a random seed instead of the derandomized examples")
    args = parser.parse_args(argv)

    from tests.cli.fuzz_strategies import StoreTemplates

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in BUDGET]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {','.join(BUDGET)}")
    print(machine_line())
    rows, details = [], []
    with tempfile.TemporaryDirectory(prefix="paramdoctor-fuzz-") as tmp:
        base = Path(tmp)
        stores = StoreTemplates(base / "stores")
        for family in families:
            examples = max(1, round(BUDGET[family] * args.scale))
            t0 = time.perf_counter()
            outcomes = run_family(family, examples, base, stores, seed=args.seed)
            row, lines = report(family, outcomes, time.perf_counter() - t0)
            print(row, flush=True)
            rows.append(row)
            details.extend(lines)
    print()
    print("| family | examples, violations | exit codes seen | distinct violations | time |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)
    print()
    print("\n".join(details) if details else "no violations")
    print()
    print(reproduce_line("fuzz_counts.py", sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
