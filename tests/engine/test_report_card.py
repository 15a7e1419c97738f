"""The report card: per-rule counts and rates over samples with known answers, and strict expect.yaml files.

Samples are realistic synthetic runs (tests.rules.synthetic) saved as real
run.json exports next to hand-written expect.yaml files, judged by the real
built-in rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from paramdoctor.engine import evaluate, load_rules
from paramdoctor.engine.report_card import (
    Expectation,
    ReportCard,
    RuleScore,
    Sample,
    load_expectation,
    load_samples,
    score,
)
from paramdoctor.errors import InputError
from paramdoctor.record import RunRecord
from tests.rules import synthetic


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def records() -> dict[str, RunRecord]:
    """healthy fires nothing; overfit fires PD301 alone; plateau fires PD201 with PD404 beside it."""
    return {"healthy": synthetic.healthy(), "overfit": synthetic.sick("PD301"), "plateau": synthetic.sick("PD201")}


def write_sample(root: Path, name: str, record: RunRecord, expect: dict | str) -> Path:
    """A sample folder as the corpus holds it: run.json and expect.yaml (a dict, or raw YAML text)."""
    folder = root / name
    record.save(folder / "run.json")
    text = expect if isinstance(expect, str) else yaml.safe_dump(expect, sort_keys=False)
    (folder / "expect.yaml").write_text(text)
    return folder


def write_corpus(root: Path, records: dict[str, RunRecord], **overrides: dict) -> Path:
    """Three samples whose expectations all hold, unless ``overrides`` replaces one's expect.yaml."""
    expects = {
        "healthy_a": ("healthy", {"what": "the default recipe", "fire": []}),
        "overfit_a": ("overfit", {"fire": ["PD301"], "run_id": "abc"}),
        "plateau_a": ("plateau", {"fire": ["loss-barely-moves"], "may_fire": ["PD203", "update-ratio-too-small"]}),
    }
    for name, (kind, expect) in expects.items():
        write_sample(root, name, records[kind], overrides.get(name, expect))
    return root


def by_code(card: ReportCard) -> dict[str, RuleScore]:
    return {r.code: r for r in card.rules}


# --- scoring ----------------------------------------------------------------------


def test_a_corpus_whose_expectations_hold(tmp_path, rules, records):
    card = score(rules, load_samples(write_corpus(tmp_path, records)))
    assert card.ok and card.exit_code == 0 and not card.misses and not card.false_alarms
    assert [s.name for s in card.samples] == ["healthy_a", "overfit_a", "plateau_a"]
    scores = by_code(card)
    assert (scores["PD301"].tp, scores["PD301"].fp, scores["PD301"].fn) == (1, 0, 0)
    assert scores["PD201"].tp == 1 and scores["PD201"].precision == scores["PD201"].recall == scores["PD201"].f1 == 1.0
    # co-firing symptoms listed in may_fire count neither way, but are seen to fire
    assert (scores["PD404"].tp, scores["PD404"].fp, scores["PD404"].also_fired) == (0, 0, 1)
    assert scores["PD404"].precision is None and scores["PD404"].f1 is None
    # macro-F1 averages only over the rules some sample expects
    assert [r.code for r in card.scored_rules] == ["PD201", "PD301"] and card.macro_f1 == 1.0
    assert (card.micro.tp, card.micro.fp, card.micro.fn) == (2, 0, 0)
    plateau = card.samples[2]
    assert plateau.fire == ("PD201",) and plateau.may_fire == ("PD203", "PD404") and "PD201" in plateau.fired


def test_a_rule_that_does_not_fire_is_a_miss(tmp_path, rules, records):
    corpus = write_corpus(tmp_path, records, healthy_a={"fire": ["PD301"]})
    card = score(rules, load_samples(corpus))
    assert not card.ok and card.exit_code == 1
    assert [m.sentence() for m in card.misses] == ["PD301 did not fire on healthy_a"]
    pd301 = by_code(card)["PD301"]
    assert (pd301.tp, pd301.fn, pd301.recall, pd301.precision) == (1, 1, 0.5, 1.0)
    assert pd301.f1 == pytest.approx(2 / 3) and card.macro_f1 == pytest.approx((1.0 + 2 / 3) / 2)
    assert [s.ok for s in card.samples] == [False, True, True]


def test_an_expected_rule_that_was_skipped_says_why(tmp_path, rules):
    # PD303 judges only runs that started from pretrained weights; this one trained from scratch
    scratch = synthetic.healthy()
    scratch.config["model"]["weights"] = None
    write_sample(tmp_path, "scratch_a", scratch, {"fire": ["backbone-drifts-from-pretrained"]})
    (miss,) = score(rules, load_samples(tmp_path)).misses
    assert (miss.code, miss.slug, miss.sample) == ("PD303", "backbone-drifts-from-pretrained", "scratch_a")
    assert "pretrained" in miss.reason and miss.sentence().startswith("PD303 did not fire on scratch_a (skipped: ")


def test_a_rule_firing_where_it_must_stay_silent_is_a_false_alarm(tmp_path, rules, records):
    corpus = write_corpus(tmp_path, records, plateau_a={"fire": ["PD201"]})
    card = score(rules, load_samples(corpus))
    assert [(f.code, f.sample) for f in card.false_alarms] == [("PD404", "plateau_a")]
    finding = next(v.finding for v in evaluate(records["plateau"], rules) if v.rule.code == "PD404")
    alarm = card.false_alarms[0]
    assert alarm.evidence == finding.evidence.message
    assert alarm.sentence() == f"PD404 fired on plateau_a: {finding.evidence.message}"
    pd404 = by_code(card)["PD404"]
    assert (pd404.fp, pd404.precision, pd404.recall, pd404.f1) == (1, 0.0, None, 0.0)
    assert "PD404" not in [r.code for r in card.scored_rules] and card.micro.fp == 1
    assert card.micro.precision == pytest.approx(2 / 3)


def test_rule_params_change_the_verdicts(tmp_path, rules, records):
    corpus = load_samples(write_corpus(tmp_path, records))
    card = score(rules, corpus, params={"PD301": {"min_rise": 50.0}})
    assert [m.sentence() for m in card.misses] == ["PD301 did not fire on overfit_a"]


def test_rates_follow_their_definitions():
    r = RuleScore("PD1", "x", tp=3, fp=1, fn=2, also_fired=4)
    assert (r.expected, r.fired) == (5, 8)
    assert (r.precision, r.recall) == (0.75, 0.6) and r.f1 == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))
    assert RuleScore("PD2", "y").to_dict() == {
        "code": "PD2", "slug": "y", "expected": 0, "tp": 0, "fp": 0, "fn": 0, "also_fired": 0,
        "precision": None, "recall": None, "f1": None,
    }
    empty = ReportCard(rules=(RuleScore("PD2", "y"),), samples=())
    assert empty.ok and empty.macro_f1 is None


def test_to_dict_is_strict_json(tmp_path, rules, records):
    corpus = write_corpus(tmp_path, records, healthy_a={"fire": ["PD301"]}, plateau_a={"fire": ["PD201"]})
    data = json.loads(json.dumps(score(rules, load_samples(corpus)).to_dict(), allow_nan=False))
    assert data["ok"] is False and data["samples"] == 3
    assert set(data["overall"]) == {"macro_f1", "rules_scored", "tp", "fp", "fn", "precision", "recall", "f1"}
    assert data["misses"] == [{"sample": "healthy_a", "code": "PD301", "slug": "val-loss-turns-up", "reason": None}]
    assert [a["code"] for a in data["false_alarms"]] == ["PD404"] and data["false_alarms"][0]["evidence"]
    assert [r["code"] for r in data["rules"]] == sorted(r.code for r in rules)
    assert data["per_sample"][0] == {"name": "healthy_a", "ok": False, "fire": ["PD301"], "may_fire": [], "fired": []}


def test_samples_built_in_memory(rules, records):
    samples = [Sample("mem", records["overfit"], Expectation(fire=["val-loss-turns-up"]))]
    assert score(rules, samples).ok


# --- loading: every problem is one line naming the file and the key ----------------------


def expect_error(tmp_path, records, text: str) -> str:
    folder = write_sample(tmp_path, "s1", records["healthy"], text)
    with pytest.raises(InputError) as info:
        score(load_rules(), load_samples(tmp_path))
    message = str(info.value)
    assert message.startswith(str(folder / "expect.yaml")) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("fire: []\nsilent: [all]\n", "unknown key 'silent'; allowed: what, fire, may_fire, run_id"),
        ("what: no fire key\n", "missing required key 'fire'"),
        ("fire: PD301\n", "fire: Input should be a valid list"),
        ("fire: [PD301, 3]\n", "fire[1]: Input should be a valid string"),
        ("fire: [PD31]\n", "fire[0]: unknown rule 'PD31'"),
        (
            "fire: []\nmay_fire: [val-los-turns-up]\n",
            "may_fire[0]: unknown rule 'val-los-turns-up' (did you mean 'val-loss-turns-up'?)",
        ),
        ("fire: [PD301]\nmay_fire: [val-loss-turns-up]\n", "may_fire: PD301 is also in fire"),
        ("- PD301\n", "must be a mapping"),
        ("fire: [PD301\n", "invalid YAML"),
    ],
)
def test_malformed_expectations(tmp_path, records, text, wanted):
    assert wanted in expect_error(tmp_path, records, text)


def test_folders_that_are_not_samples(tmp_path, records):
    with pytest.raises(InputError, match="samples directory not found"):
        load_samples(tmp_path / "nowhere")
    (tmp_path / ".store").mkdir()
    (tmp_path / ".store" / "expect.yaml").write_text("fire: []\n")  # hidden: ignored
    (tmp_path / "notes").mkdir()  # neither file: ignored
    with pytest.raises(InputError, match="no samples found"):
        load_samples(tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "expect.yaml").write_text("fire: []\n")
    with pytest.raises(InputError, match=r"half: sample has no run\.json"):
        load_samples(tmp_path)
    (tmp_path / "half" / "run.json").write_text("{}")
    with pytest.raises(InputError, match="not a paramdoctor run export"):
        load_samples(tmp_path)


def test_load_expectation_reads_every_field(tmp_path):
    path = tmp_path / "expect.yaml"
    path.write_text("what: too low\nfire: [PD201]\nmay_fire: [PD404]\nrun_id: 0a1b\n")
    assert load_expectation(path) == Expectation(what="too low", fire=["PD201"], may_fire=["PD404"], run_id="0a1b")
    with pytest.raises(InputError, match="cannot read expectation file"):
        load_expectation(tmp_path / "missing.yaml")
