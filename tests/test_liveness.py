"""A RUNNING run whose trainer stopped beating died; the doctor gives no verdict on half a run."""

from __future__ import annotations

import dataclasses

import pytest

from paramdoctor import keys
from paramdoctor.engine import diagnose, load_rules
from paramdoctor.liveness import allowed_silence_s, interruption, is_interrupted
from tests.rules import synthetic

NOW = 1_800_000_000.0
RULES = load_rules()


def _tags(silent_s: float, every: float = 30.0) -> dict[str, str]:
    return {keys.TAG_HEARTBEAT: str(NOW - silent_s), keys.TAG_HEARTBEAT_EVERY: str(every)}


@pytest.mark.parametrize(
    ("status", "silent", "every", "dead"),
    [
        ("RUNNING", 10, 30, False),
        ("RUNNING", 89, 30, False),  # at least 90 s of silence
        ("RUNNING", 91, 30, True),
        ("RUNNING", 299, 100, False),  # three missed beats of a slow heartbeat
        ("RUNNING", 301, 100, True),
        ("KILLED", 10_000, 30, False),  # closed properly: not interrupted
        ("FINISHED", 10_000, 30, False),
    ],
)
def test_three_missed_beats_and_90_s_of_silence_mean_the_trainer_died(status, silent, every, dead):
    assert is_interrupted(status, _tags(silent, every), NOW) is dead


def test_a_run_that_never_beat_or_beats_garbage_is_not_called_dead():
    assert not is_interrupted("RUNNING", {}, NOW)
    assert not is_interrupted("RUNNING", {keys.TAG_HEARTBEAT: "nan"}, NOW)
    assert allowed_silence_s({keys.TAG_HEARTBEAT_EVERY: "-inf"}) == 90.0


def test_the_sentence_names_the_silence_and_the_resume_command():
    text = interruption("RUNNING", _tags(600), NOW, "abc")
    assert "10 min ago" in text and "paramdoctor train --resume abc" in text


def test_diagnose_gives_an_interrupted_run_no_verdict_and_exit_4():
    sick = synthetic.sick("PD301")
    running = dataclasses.replace(sick, status="RUNNING", run_id="r1", tags={**sick.tags, **_tags(3600)})
    d = diagnose(running, RULES, now=NOW)
    assert d.status == "interrupted" and d.exit_code == 4 and d.findings == []
    assert "paramdoctor train --resume r1" in d.interrupted
    assert d.to_dict()["interrupted"] == d.interrupted
    alive = dataclasses.replace(running, tags={**sick.tags, **_tags(5)})
    assert diagnose(alive, RULES, now=NOW).status == "findings"  # a live run is judged as it goes
