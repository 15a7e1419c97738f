"""The real corpus (``sample_runs/real/``): other projects' logs, each with provenance, labels and a frozen split.

These tests hold the corpus to its own rules (LABELING.md) and guard the
doctor's calibration score against regressions. They never tune anything and
never assert a number on the test split: that split is reported by
``benchmarks/real_corpus.py`` and ``paramdoctor rules test``, not optimised.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from paramdoctor.diagnosis import CATEGORIES
from paramdoctor.engine import load_rules
from paramdoctor.engine.real_corpus import doctor, load_real_samples, score_real, split_of

REAL_DIR = Path(__file__).resolve().parent.parent / "sample_runs" / "real"
MIN_SAMPLES = 120
MIN_FORMATS = 8
MIN_HEALTHY_SHARE = 0.25
# The calibration score the thresholds were set at, less a margin for noise-free regressions to show.
CALIBRATION_MACRO_F1_FLOOR = 0.75
MAX_HEALTHY_FALSE_ALARM_RATE = 1 / 8


@pytest.fixture(scope="module")
def samples():
    return load_real_samples(REAL_DIR)


def test_the_corpus_is_large_varied_and_a_quarter_healthy(samples):
    assert len(samples) >= MIN_SAMPLES
    formats = Counter(s.source.format for s in samples)
    assert len(formats) >= MIN_FORMATS, formats
    repositories = Counter(s.source.repository for s in samples)
    assert max(repositories.values()) <= 3, repositories.most_common(3)
    healthy = sum(1 for s in samples if s.healthy)
    assert healthy / len(samples) >= MIN_HEALTHY_SHARE


def test_every_sample_has_provenance_and_labels_from_the_vocabulary(samples):
    for s in samples:
        assert len(s.source.commit) == 40 and s.source.commit in s.source.url and s.source.repository in s.source.url
        assert set(s.expect.labels) <= set(CATEGORIES) and set(s.expect.may) <= set(CATEGORIES)
        assert s.expect.rationale.strip()
        assert "forgetting" not in s.expect.labels  # logs carry no weight telemetry (LABELING.md)


def test_the_split_is_the_frozen_draw_from_the_name(samples):
    # load_real_samples refuses a hand-chosen split; this pins the draw itself
    assert split_of("hf-trainer-state-francis-xsc-bert-weibo-rumor") == "calibration"
    splits = Counter(s.expect.split for s in samples)
    assert 0.2 <= splits["test"] / len(samples) <= 0.4, splits
    assert all(s.expect.split == split_of(s.name) for s in samples)


def test_every_log_in_a_listed_format_is_read(samples):
    unread = [f"{s.name}: {s.error}" for s in samples if s.error is not None]
    assert not unread, "\n".join(unread)


@pytest.fixture(scope="module")
def calibration(samples):
    return score_real(samples, doctor(load_rules()), split="calibration")


def test_the_calibration_score_does_not_regress(calibration):
    assert calibration.macro_f1 >= CALIBRATION_MACRO_F1_FLOOR, [
        (c.category, c.f1) for c in calibration.scored
    ]


def test_healthy_calibration_logs_rarely_draw_a_false_alarm(calibration):
    assert calibration.healthy_alarms <= MAX_HEALTHY_FALSE_ALARM_RATE * calibration.healthy
