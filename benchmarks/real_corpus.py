"""The doctor beside the anchors on the real corpus: other projects' logs, scored by category.

Every log in ``sample_runs/real/`` was labelled by hand from its numbers
(``sample_runs/real/LABELING.md``) and drawn once into a calibration or a
test split by its name. This scores paramdoctor's built-in rules and the three
anchors (SageMaker Debugger's built-in rules, AUTOTRAINER, UMLAUT; see
``benchmarks/anchors``) on one split: macro-F1 over the categories labelled
in it, micro precision/recall/F1, how many healthy logs drew a false alarm,
how many logs could not be read, and F1 per category. Thresholds are tuned on
the calibration split only; the test split is the honest estimate::

    .venv/bin/python benchmarks/real_corpus.py                 # the test split
    .venv/bin/python benchmarks/real_corpus.py --split calibration
    .venv/bin/python benchmarks/real_corpus.py --json out.json --misses
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_ROOT, reproduce_line  # noqa: E402

from paramdoctor.diagnosis import CATEGORIES  # noqa: E402
from paramdoctor.engine import load_rules  # noqa: E402
from paramdoctor.engine.real_corpus import CategoryCard, doctor, load_real_samples, score_real  # noqa: E402


def cards(real_dir: Path, split: str) -> tuple[list[CategoryCard], int]:
    from benchmarks.anchors import ANCHORS

    samples = load_real_samples(real_dir)
    predictors = {"paramdoctor": doctor(load_rules())}
    predictors.update(ANCHORS)
    out = [score_real(samples, predict, split=split, predictor=name) for name, predict in predictors.items()]
    return out, len(samples)


def _rate(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.2f}"


def render(result: list[CategoryCard], total: int, split: str, seconds: float, show_misses: bool) -> str:
    first = result[0]
    lines = [
        f"real corpus, {split} split: {len(first.results)} of {total} logs, {first.healthy} healthy; "
        f"{len(first.errors)} could not be read ({seconds:.1f} s)",
        "",
        f"{'predictor':<14} {'macro-F1':>8} {'precision':>9} {'recall':>7} {'F1':>5}  {'healthy false alarms':>21}  per category F1",
    ]
    scored = [c.category for c in first.scored]
    for card in result:
        micro = card.micro
        per = {c.category: c for c in card.categories}
        per_cat = "  ".join(f"{name}={_rate(per[name].f1)}" for name in scored)
        alarms = f"{card.healthy_alarms} of {card.healthy}"
        lines.append(
            f"{card.predictor:<14} {_rate(card.macro_f1):>8} {_rate(micro.precision):>9} {_rate(micro.recall):>7} "
            f"{_rate(micro.f1):>5}  {alarms:>21}  {per_cat}"
        )
    lines.append("")
    lines.append("labelled in this split: " + ", ".join(f"{c.category} {c.expected}" for c in first.scored))
    if show_misses:
        lines.append("")
        lines.append("paramdoctor, sample by sample (wrong ones only):")
        for r in first.results:
            if r.error:
                lines.append(f"  {r.name}: input error: {r.error}")
            elif not r.ok:
                parts = []
                if r.missed:
                    parts.append("missed " + ", ".join(r.missed))
                if r.false_alarms:
                    parts.append("false alarm " + ", ".join(r.false_alarms))
                lines.append(f"  {r.name}: {'; '.join(parts)}")
    lines.append("")
    lines.append(reproduce_line("real_corpus.py", sys.argv[1:]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("test", "calibration", "all"), default="test")
    parser.add_argument("--real-dir", type=Path, default=REPO_ROOT / "sample_runs" / "real")
    parser.add_argument("--misses", action="store_true", help="list paramdoctor's misses and false alarms")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every card as JSON")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result, total = cards(args.real_dir, args.split)
    print(render(result, total, args.split, time.perf_counter() - start, args.misses))
    if args.json:
        args.json.write_text(json.dumps({c.predictor: c.to_dict() for c in result}, indent=1))
    assert all(c in CATEGORIES for card in result for c in (s.category for s in card.categories))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
