"""The exported-run format read back: a malformed export is one InputError naming the field, never Python's own words."""

from __future__ import annotations

import json
import math

import pytest

from paramdoctor.errors import InputError
from paramdoctor.record import EXPORT_FORMAT, RunRecord, Series


def export(**fields) -> dict:
    base = {"format": EXPORT_FORMAT, "series": {"val/loss": {"steps": [1, 2], "values": [1.0, 0.5]}}}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"series": {"val/loss": 0.5}}, """series 'val/loss': expected {"steps": [...], "values": [...]}, got a number (0.5)"""),
        ({"series": {"val/loss": {"values": [1.0]}}}, """series 'val/loss': "steps" must be a list of numbers, got null"""),
        ({"series": {"val/loss": {"steps": 3, "values": [1.0]}}}, """"steps" must be a list of numbers, got a number (3)"""),
        ({"series": {"val/loss": {"steps": [1, 2], "values": [1.0]}}}, """"steps" and "values" differ in length (2 vs 1)"""),
        ({"series": {"val/loss": {"steps": [1, 2], "values": [1.0, "x"]}}}, """series 'val/loss': "values"[1] is 'x', not a number"""),
        ({"series": {"val/loss": {"steps": [1, 2], "values": [1.0, [2]]}}}, """"values"[1] is [2], not a number"""),
        ({"series": [1, 2]}, """"series" must be a mapping of curve name to"""),
        ({"config": [1]}, """"config" must be a mapping, got a list"""),
        ({"meta": "x"}, """"meta" must be a mapping, got a string ('x')"""),
        ({"status": "DONE"}, """"status" must be one of RUNNING, FINISHED, FAILED, KILLED, UNKNOWN, got 'DONE'"""),
        ({"status": 3}, """"status" must be one of RUNNING"""),
        ({"x_unit": "batch"}, """"x_unit" must be 'epoch' or 'step', got 'batch'"""),
        ({"run_id": {"a": 1}}, """"run_id" must be a string or null, got a mapping"""),
        ({"source": False}, """"source" must be a string, got false"""),
    ],
)
def test_a_malformed_export_names_the_field_and_what_it_should_be(tmp_path, fields, says):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(export(**fields)))
    with pytest.raises(InputError) as raised:
        RunRecord.load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: malformed run export: ") and says in message
    assert "\n" not in message and "object" not in message and "KeyError" not in message


def test_an_integer_beyond_a_float_reads_as_infinite():
    series = Series.from_dict({"steps": [1, 2], "values": [10**400, -(10**400)]})
    assert series.values.tolist() == [math.inf, -math.inf]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"format": "%s", "meta": {"n": %s}}' % (EXPORT_FORMAT, "9" * 5000), "holds a number too long to be a metric"),
        ('{"format": "%s", "meta": %s%s}' % (EXPORT_FORMAT, "[" * 100_000, "]" * 100_000), "nested too deeply"),
    ],
)
def test_json_python_cannot_read_is_one_input_error(tmp_path, text, says):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(InputError, match=says):
        RunRecord.load(path)


def test_an_export_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b'{"format": "%s", "run_name": "\xff"}' % EXPORT_FORMAT.encode())
    with pytest.raises(InputError, match="not UTF-8"):
        RunRecord.load(path)

