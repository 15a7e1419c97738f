"""The shipped corpus (``sample_runs/``) is the built-in rules' fixture: every expectation must hold.

Each sample is a real ``paramdoctor train`` run with a deliberately chosen
configuration; ``expect.yaml`` says which rules must fire and which may. The
report card judges them all once with the built-in rules.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from paramdoctor.engine import load_rules
from paramdoctor.engine.report_card import ReportCard, load_samples, resolve_expectation, score

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "sample_runs"
MIN_SAMPLES = 20
MIN_SAMPLES_PER_RULE = 2
# Rules no real digits run has yet reproduced often enough, with why. The corpus tests
# hold these to exactly what is listed: closing a gap (or opening a new one) fails
# until this list is updated, so it can only shrink knowingly.
KNOWN_GAPS: dict[str, int] = {
    # isolated loss spikes: fires as a co-symptom (dead_network_adamw_lr1_no_batchnorm_seed2,
    # loss_rebounds_far_above_minimum), but no scenario is designed around it yet
    "PD108": 0,
    # training loss stuck at chance: fires only where an oscillating_sgd_lr1_batch16 seed collapses;
    # no scenario is designed around it yet
    "PD205": 0,
}


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def samples():
    return load_samples(SAMPLES_DIR)


@pytest.fixture(scope="module")
def card(rules, samples) -> ReportCard:
    return score(rules, samples)


def test_the_corpus_is_large_enough(samples):
    count = len(samples)
    assert count >= MIN_SAMPLES, f"{count} samples in {SAMPLES_DIR}, want at least {MIN_SAMPLES}"


def test_every_expectation_holds(card):
    broken = [m.sentence() for m in card.misses] + [f.sentence() for f in card.false_alarms]
    assert not broken, f"{len(broken)} expectations broken:\n" + "\n".join(broken)


def test_every_builtin_rule_fires_on_some_sample(card):
    never = sorted(r.code for r in card.rules if r.fired == 0)
    unexplained = [c for c in never if c not in KNOWN_GAPS]
    assert not unexplained, f"rules that fire on no sample: {', '.join(unexplained)}"


def test_healthy_samples_draw_no_finding_at_all(card):
    noisy = [f"{s.name}: {', '.join(s.fired)}" for s in card.samples if not s.fire and s.fired]
    assert not noisy, "rules fired on samples whose fire list is empty: " + "; ".join(noisy)


def test_every_rule_is_expected_on_at_least_two_samples(rules, samples):
    expected = Counter(code for sample in samples for code in resolve_expectation(rules, sample)[0])
    thin = {r.code: expected[r.code] for r in rules if expected[r.code] < MIN_SAMPLES_PER_RULE}
    assert thin == KNOWN_GAPS, f"rules listed in `fire` of fewer than {MIN_SAMPLES_PER_RULE} samples: {thin}"
