"""Read other tools' log files defensively: size cap, text check, JSON/JSONL/CSV parsing.

Log files come from anywhere (a crashed run, a copy cut short, a file that is
not a log at all). Every way of failing here becomes one :class:`InputError`
line naming the file, so no parser error (``RecursionError`` from deeply
nested JSON, ``UnicodeDecodeError``, ``csv.Error``, ``OverflowError``,
``ValueError`` from giant integers) reaches the user as a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramdoctor.errors import InputError

MAX_BYTES = 200 * 1024 * 1024  # the most paramdoctor reads from one log file
MAX_X = 1e15  # steps and epochs beyond this are not counters (MLflow steps are 64-bit integers)
_DELIMITERS = (",", ";", "\t")
_QUOTED = re.compile(r'"[^"]*"')
_NAN_WORDS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


class NotANumber(ValueError):
    """A value that should be a number is not one (the caller adds where it was)."""


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The file's text, refusing files over ``limit`` bytes, empty files, binary data and non-UTF-8 text."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(_too_big(path, size, limit))
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise InputError(_too_big(path, len(raw), limit))
    if not raw.strip():
        raise InputError(f"{path}: the file is empty (nothing was logged; point at a log written by a finished or running job)")
    if b"\x00" in raw:
        raise InputError(f"{path}: binary data, not a text log (give a JSON, JSONL or CSV log file)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}; give the tool's JSON, JSONL or CSV log)") from None


def _too_big(path: Path, size: int, limit: int) -> str:
    return (
        f"{path}: {size / 2**20:.0f} MiB is more than the {limit // 2**20} MiB paramdoctor reads from one log file "
        "(point at the run's own log, not a concatenation of many)"
    )


def parse_json(text: str, path: Path) -> Any:
    """``json.loads`` with every failure (syntax, nesting too deep, giant integers) as one InputError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}; the file may be cut short)") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be a training log") from None
    except (ValueError, OverflowError):  # integers of thousands of digits
        raise InputError(f"{path}: unreadable JSON (holds a number too long to be a metric)") from None
    except MemoryError:
        raise InputError(f"{path}: JSON too large to hold in memory") from None


@dataclass
class JsonLines:
    """The objects of a JSONL file, each with its 1-based line number."""

    objects: list[tuple[int, dict[str, Any]]]
    truncated_last_line: bool = False


def parse_jsonl(text: str, path: Path) -> JsonLines:
    """One JSON object per line; a last line cut short mid-write (no newline at its end) is dropped, not fatal."""
    lines = text.splitlines()
    ends_with_newline = text.endswith(("\n", "\r"))
    objects: list[tuple[int, dict[str, Any]]] = []
    truncated = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, ValueError, RecursionError, OverflowError) as exc:
            if number == len(lines) and not ends_with_newline and objects:
                truncated = True  # a job killed while writing its last log line
                continue
            what = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
            raise InputError(f"{path}: line {number}: {what} (each line of a JSONL log must be one JSON object)") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: line {number}: expected a JSON object, got {_json_type(obj)}")
        objects.append((number, obj))
    return JsonLines(objects, truncated)


@dataclass
class CsvTable:
    """A CSV file as a header and rows of raw cells; ``restarts`` are row indices where a repeated header began a new run."""

    header: list[str]
    rows: list[tuple[int, list[str]]]  # (1-based line number, cells)
    restarts: list[int]


def parse_csv(text: str, path: Path) -> CsvTable:
    """Rows of a CSV log; the header's names are stripped (Ultralytics pads them with spaces).

    The delimiter is the one of ``,`` ``;`` and tab that the header line holds
    most of (Keras ``CSVLogger(separator=";")``, tab-separated exports). One
    leading line without any of them (a title such as ``model_history_log``)
    is skipped when the next line is a header. A first line of numbers only is
    no header but the first row: the columns are then named by position
    (``0``, ``1``, ...).
    """
    delimiter, skip_title = sniff_csv_layout(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header: list[str] | None = None
        rows: list[tuple[int, list[str]]] = []
        restarts: list[int] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if skip_title:
                skip_title = False
                continue
            if header is None:
                header = [c.strip() for c in cells]
                if all(_is_value(c) for c in header):  # no header line: the columns are named by position
                    header = [str(i) for i in range(len(cells))]
                    rows.append((reader.line_num, [c.strip() for c in cells]))
                continue
            stripped = [c.strip() for c in cells]
            if stripped == header:  # two logs concatenated: the second one's header
                restarts.append(len(rows))
                continue
            if len(cells) > len(header):
                raise InputError(
                    f"{path}: line {reader.line_num}: {len(cells)} fields but the header has {len(header)} "
                    "(is this a CSV log with one header line?)"
                )
            rows.append((reader.line_num, stripped))
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({_first_line(exc)})") from None
    if header is None:
        raise InputError(f"{path}: no CSV header found (the file holds no columns)")
    return CsvTable(header, rows, restarts)


def sniff_csv_layout(text: str) -> tuple[str, bool]:
    """The CSV delimiter, and whether the first non-empty line is a title to skip (see :func:`parse_csv`)."""
    lines: list[str] = []
    start = 0
    while start < len(text) and len(lines) < 2:  # the first two non-empty lines, without splitting the whole text
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].rstrip("\r")
        if line.strip():
            lines.append(line)
        start = end + 1
    if not lines:
        return ",", False
    first = _delimiter_of(lines[0])
    if first is None and len(lines) == 2:
        second = _delimiter_of(lines[1])
        if second is not None and _is_header(lines[1], second):
            return second, True
    return first or ",", False


def _delimiter_of(line: str) -> str | None:
    unquoted = _QUOTED.sub("", line)
    counts = {d: unquoted.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])  # the first of the most frequent
    return best if counts[best] else None


def _is_value(cell: str) -> bool:
    try:
        return to_number(cell) is not None
    except NotANumber:
        return False


def _is_header(line: str, delimiter: str) -> bool:
    """Names, not values: some cell is a word."""
    try:
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return False
    for cell in cells:
        try:
            to_number(cell)
        except NotANumber:
            return True
    return False


def to_number(value: Any) -> float | None:
    """A metric value as float: None for a missing value, NaN/inf kept (they are evidence).

    Raises :class:`NotANumber` for anything that is not a number: booleans,
    lists, objects, words. Numbers too large for a float become infinities.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise NotANumber(f"{value!r} is a boolean")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.lower() in _NAN_WORDS:
            return float(text.lower().replace("infinity", "inf"))
        if len(text) > 400:
            raise NotANumber(f"a {len(text)}-character string")
        try:
            return float(text)
        except (ValueError, OverflowError):
            raise NotANumber(repr(text[:40])) from None
    raise NotANumber(f"a JSON {_json_type(value)}")


def to_counter(value: Any) -> float | None:
    """A step or epoch counter: a finite number of sensible size, or None when missing."""
    number = to_number(value)
    if number is None:
        return None
    if not math.isfinite(number) or abs(number) > MAX_X:
        raise NotANumber(repr(value)[:40])
    return number


def printable(text: Any, limit: int = 60) -> str:
    """A user- or file-supplied name made safe for a one-line message (control characters escaped, length capped)."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
