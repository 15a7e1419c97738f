"""The per-diagnosis memo: one record per memo, the same verdicts with or without it, measurements shared only when they may be."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from paramdoctor.diagnosis import jsonable
from paramdoctor.engine import diagnose, evaluate, evaluate_rule, load_rules, summarize
from paramdoctor.engine.eval_sets import views
from paramdoctor.engine.measure import SIGNALS, Request, Unavailable
from paramdoctor.engine.memo import RecordMemo
from paramdoctor.engine.real_corpus import load_real_sample
from paramdoctor.engine.report_card import load_sample

SAMPLES = Path(__file__).resolve().parents[2] / "sample_runs"
DIGITS = ("diverged_sgd_lr10", "drift_finetune_high_backbone_lr", "overfit_small_subset", "healthy_seed1", "plateau_at_lr_floor",
          "warmup_never_ends", "noisy_tiny_batches", "too_few_epochs")
REAL = ("csv-heroforurth-cnn-font-and-nofont", "hf-trainer-state-al-reza89-thesis-web", "lightning-csv-georgtenzing-eeg-classification")


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def records():
    """Runs with telemetry, step series, several evaluation sets, other tools' logs: every kind of memo entry."""
    out = {name: load_sample(SAMPLES / name).record for name in DIGITS}
    out.update({name: load_real_sample(SAMPLES / "real" / name).record for name in REAL})
    assert all(r is not None for r in out.values())
    return out


def _as_json(diagnosis) -> str:
    return json.dumps(jsonable(diagnosis.to_dict()), sort_keys=True, allow_nan=False)


def _verdicts(verdicts) -> list:
    return [(v.rule.code, None if v.finding is None else dataclasses.asdict(v.finding), v.skipped) for v in verdicts]


def test_a_memo_refuses_a_record_it_was_not_made_for(records, rules):
    a, b = records["healthy_seed1"], records["overfit_small_subset"]
    memo = RecordMemo(a)
    with pytest.raises(ValueError, match="belongs to one run record"):
        evaluate(b, rules, memo=memo)
    with pytest.raises(ValueError, match="belongs to one run record"):
        evaluate_rule(rules[0], b, memo=memo)
    with pytest.raises(ValueError, match="belongs to one run record"):
        Request(record=b, params={}, series=None, memo=memo)
    with pytest.raises(ValueError, match="belongs to one run record"):
        summarize(b, memo)
    # an equal copy is still another record: ownership is by identity, never by content
    with pytest.raises(ValueError):
        evaluate(dataclasses.replace(a), rules, memo=memo)


def test_diagnosing_a_record_twice_or_after_another_gives_the_same_diagnosis(records, rules):
    first = {name: _as_json(diagnose(r, rules, now=0.0)) for name, r in records.items()}
    for name, record in reversed(list(records.items())):  # another order: nothing carries over from run to run
        assert _as_json(diagnose(record, rules, now=0.0)) == first[name]
    assert len(set(first.values())) == len(first)


def test_one_memo_for_all_rules_gives_what_a_fresh_memo_per_rule_gives(records, rules):
    for record in records.values():
        for _, view in views(record):
            shared = evaluate(view, rules)
            alone = [evaluate_rule(r, view, dict(r.params), RecordMemo(view)) for r in rules]
            by_code = {v.rule.code: v for v in alone}
            assert _verdicts(shared) == _verdicts([by_code[v.rule.code] for v in shared])


def test_rules_on_one_signal_with_the_same_settings_measure_once(records, rules):
    record = records["overfit_small_subset"]
    memo = RecordMemo(record)
    evaluate(record, rules, memo=memo)
    measured = [key for key in memo._store if key[0] == "measure"]
    assert len(measured) == len(set(measured))
    progress = [key for key in measured if key[1] == "train_progress"]
    assert len(progress) == 1  # PD201 (defaults) and PD202 (the same values written out) share one measurement
    assert memo.hits > 0


class _Recording(Mapping):
    """Rule parameters that remember which ones a measurement read."""

    def __init__(self, values):
        self.values, self.read = dict(values), set()

    def __getitem__(self, key):
        self.read.add(key)
        return self.values[key]

    def get(self, key, default=None):
        self.read.add(key)
        return self.values.get(key, default)

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def _outcome(result):
    if isinstance(result, Unavailable):
        return ("unavailable", result.reason)
    return (json.dumps(jsonable(dict(result.values)), sort_keys=True), result.unit, result.onset)


def test_measurements_read_only_the_parameters_they_declare_with_the_defaults_they_declare(records, rules):
    """The memo keys a measurement by ``SignalSpec.reads``: nothing else may change it, and its defaults must be the signal's."""
    measured = 0
    for record in records.values():
        for rule in rules:
            spec = SIGNALS[rule.signal]
            series = next((s for s in rule.series if record.get(s) is not None), None)
            if spec.inputs and series is None:
                continue
            params = _Recording(rule.params)
            try:
                with_rule = spec.measure(Request(record, params, series))
            except (ArithmeticError, ValueError, KeyError):
                continue  # a rule evaluate_rule would skip for missing input or a numerical corner
            measured += not isinstance(with_rule, Unavailable)
            assert params.read <= set(spec.reads), f"{rule.signal} reads {params.read - set(spec.reads)} undeclared"
            declared = {name: rule.params.get(name, default) for name, default in spec.reads.items()}
            assert _outcome(spec.measure(Request(record, declared, series))) == _outcome(with_rule)
            defaults_only = {name: value for name, value in declared.items() if name in rule.params}
            missing = {k: v for k, v in spec.reads.items() if k not in rule.params}
            if missing:  # parameters a rule leaves out take the declared default, in the memo's key and in the signal
                assert _outcome(spec.measure(Request(record, defaults_only, series))) == _outcome(
                    spec.measure(Request(record, {**defaults_only, **missing}, series))
                )
    assert measured > 100  # most rules measured something on these runs


def test_what_the_memo_hands_out_cannot_be_changed(records):
    memo = RecordMemo(records["healthy_seed1"])
    smoothed = memo.smooth(records["healthy_seed1"].series["val/loss"].values)
    assert not smoothed.flags.writeable
    with pytest.raises(ValueError):
        smoothed[0] = 0.0
    again = memo.smooth(np.array(records["healthy_seed1"].series["val/loss"].values))  # equal content, another array
    assert again is smoothed and memo.hits == 1
