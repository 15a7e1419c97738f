"""Read other tools' log files defensively: size cap, text check, JSON/JSONL/CSV parsing.

Log files come from anywhere (a crashed run, a copy cut short, a file that is
not a log at all). Every way of failing here becomes one :class:`InputError`
line naming the file, so no parser error (``RecursionError`` from deeply
nested JSON, ``UnicodeDecodeError``, ``csv.Error``, ``OverflowError``,
``ValueError`` from giant integers) reaches the user as a traceback.

Size: one log file is read whole, up to ``MAX_BYTES`` (200 MiB); a larger
one is refused with a message (a run's own log is far smaller; a file that
size is usually many logs concatenated). Everything after reading is linear
in the file: a CSV becomes float arrays a chunk of rows at a time, so a
million-row CSV (30-40 MB) costs a few seconds and ~300 MB in all for
``diagnose``, and a CSV at the limit (~6 million rows) ~30 s and ~1.1 GB. A
JSON log becomes Python objects first (``json.loads``): a 200 MB
``trainer_state.json`` (~1.1 million entries) ~15 s and ~1.2 GB.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from itertools import zip_longest
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from paramdoctor.errors import InputError

MAX_BYTES = 200 * 1024 * 1024  # the most paramdoctor reads from one log file (costs in the module doc)
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
            raw = fh.read(min(size, limit) + 1)  # not read(limit + 1): that allocates the whole limit first
            if len(raw) > size:  # written to since stat (a running job): what is there now, up to the limit
                parts, total = [raw], len(raw)
                while total <= limit and (more := fh.read(1 << 20)):
                    parts.append(more)
                    total += len(more)
                raw = b"".join(parts)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise InputError(_too_big(path, len(raw), limit))
    if not raw or raw.isspace():  # (not raw.strip(): that copies the whole file)
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


_CHUNK_ROWS = 65_536  # CSV rows converted to numbers at a time: the raw cells of one chunk are all that is held


@dataclass
class CsvColumn:
    """One CSV column as numbers: ``values`` (NaN where no number), ``present`` (the cell is not empty).

    Cells that are not numbers (``words``: a timestamp, a run name, a phase)
    and numbers no step counter can be (``odd``: NaN, inf, beyond ``MAX_X``)
    keep their text, by row, for the messages that quote them.
    """

    values: np.ndarray
    present: np.ndarray
    words: dict[int, str]
    odd: dict[int, str]

    def text(self, row: int) -> str:
        """The cell as text ("" when empty): its own words, else the shortest text of its number."""
        if not self.present[row]:
            return ""
        found = self.words.get(row)
        if found is None:
            found = self.odd.get(row)
        return found if found is not None else repr(float(self.values[row]))


@dataclass
class CsvTable:
    """A CSV file as a header and columns of numbers (:class:`CsvColumn`), one entry per row in ``lines``.

    Rows are held as columns: a log of a million rows is a few float arrays,
    not a million lists of strings. ``widths`` is the number of fields of each
    row (a row may be shorter than the header); ``restarts`` are row indices
    where a repeated header began a new run. :attr:`rows` gives the rows back
    as text for the formats read row by row (short, per-epoch logs).
    """

    header: list[str]
    columns: list[CsvColumn]  # one per header position
    lines: np.ndarray  # 1-based line number of each row
    widths: np.ndarray
    restarts: list[int]

    def __len__(self) -> int:
        return int(self.lines.size)

    def column(self, name: str) -> CsvColumn | None:
        """The column called ``name``; several of that name merge, the last non-empty cell winning (as a dict of the row would)."""
        found = [col for col, header in zip(self.columns, self.header) if header == name]
        if len(found) <= 1:
            return found[0] if found else None
        values, present = found[0].values.copy(), found[0].present.copy()
        words, odd = dict(found[0].words), dict(found[0].odd)
        for col in found[1:]:
            values[col.present] = col.values[col.present]
            present |= col.present
            for row in np.flatnonzero(col.present).tolist():
                words.pop(row, None)
                odd.pop(row, None)
            words.update(col.words)
            odd.update(col.odd)
        return CsvColumn(values, present, words, odd)

    @cached_property
    def rows(self) -> list[tuple[int, list[str]]]:
        """(line, stripped cells) per row, each as long as the row was in the file."""
        out = []
        for i, (line, width) in enumerate(zip(self.lines.tolist(), self.widths.tolist())):
            out.append((line, [self.columns[j].text(i) for j in range(width)]))
        return out


class _Columns:
    """Builds the :class:`CsvColumn` list of a table chunk by chunk, into arrays sized once (``capacity`` rows at most)."""

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.values = [np.full(capacity, math.nan) for _ in range(width)]
        self.present = [np.zeros(capacity, dtype=bool) for _ in range(width)]
        self.words: list[dict[int, str]] = [{} for _ in range(width)]
        self.odd: list[dict[int, str]] = [{} for _ in range(width)]
        self.lines = np.zeros(capacity, dtype=np.int64)
        self.widths = np.zeros(capacity, dtype=np.int32)
        self.count = 0

    def add(self, chunk: list[list[str]], lines: list[int]) -> None:
        if not chunk:
            return
        n = len(chunk)
        rows = slice(self.count, self.count + n)
        self.lines[rows] = lines
        self.widths[rows] = np.fromiter(map(len, chunk), dtype=np.int32, count=n)
        cells_by_column = list(zip_longest(*chunk, fillvalue=""))
        for j in range(self.width):
            if j < len(cells_by_column):
                _to_numbers(cells_by_column[j], self.count, self.values[j][rows], self.present[j][rows], self.words[j], self.odd[j])
        self.count += n

    def table(self, header: list[str], restarts: list[int]) -> CsvTable:
        rows = slice(0, self.count)
        columns = [CsvColumn(self.values[j][rows], self.present[j][rows], self.words[j], self.odd[j]) for j in range(self.width)]
        return CsvTable(header, columns, self.lines[rows], self.widths[rows], restarts)


def _to_numbers(
    cells: tuple[str, ...], offset: int, values: np.ndarray, present: np.ndarray, words: dict[int, str], odd: dict[int, str]
) -> None:
    """Fill ``values``/``present`` (NaN/False) with one column of a chunk, as :func:`to_number` reads each stripped cell.

    ``float`` itself reads most cells (it ignores surrounding whitespace and
    knows nan/inf); a column holding an empty, blank, overlong or worded cell
    is read cell by cell.
    """
    array = np.asarray(cells, dtype=object)
    filled = np.flatnonzero(array != "")
    given = array[filled]
    try:
        if given.size and max(map(len, given)) > 400:
            raise ValueError("read cell by cell: to_number refuses overlong text")
        values[filled] = np.fromiter(map(float, given), dtype=float, count=given.size)
        present[filled] = True
    except ValueError:
        for i, cell in zip(filled.tolist(), given.tolist()):
            text = cell.strip()
            if not text:
                continue
            present[i] = True
            try:
                values[i] = to_number(text)
            except NotANumber:
                words[offset + i] = text
    with np.errstate(invalid="ignore"):
        unusual = present & ~(np.abs(values) <= MAX_X)  # NaN, inf, huge: kept as text for counter messages
    for i in np.flatnonzero(unusual).tolist():
        if offset + i not in words:
            odd[offset + i] = cells[i].strip()


def parse_csv(text: str, path: Path) -> CsvTable:
    """Rows of a CSV log; the header's names are stripped (Ultralytics pads them with spaces).

    The delimiter is the one of ``,`` ``;`` and tab that the header line holds
    most of (Keras ``CSVLogger(separator=";")``, tab-separated exports). One
    leading line without any of them (a title such as ``model_history_log``)
    is skipped when the next line is a header. A first line of numbers only is
    no header but the first row: the columns are then named by position
    (``0``, ``1``, ...). The cells are converted to numbers a chunk of rows at
    a time (:class:`CsvTable`).
    """
    delimiter, skip_title = sniff_csv_layout(text)
    header: list[str] | None = None
    built: _Columns | None = None
    chunk: list[list[str]] = []
    lines: list[int] = []
    restarts: list[int] = []
    try:
        reader = csv.reader(_lines(text), delimiter=delimiter)
        for cells in reader:
            first = cells[0].strip() if cells else ""
            if not first and not "".join(cells).strip():
                continue
            if skip_title:
                skip_title = False
                continue
            if header is None:
                header = [c.strip() for c in cells]
                built = _Columns(len(header), capacity=_line_count(text))
                if all(_is_value(c) for c in header):  # no header line: the columns are named by position
                    header = [str(i) for i in range(len(cells))]
                    chunk.append(cells)
                    lines.append(reader.line_num)
                continue
            if len(cells) > len(header):
                raise InputError(
                    f"{path}: line {reader.line_num}: {len(cells)} fields but the header has {len(header)} "
                    "(is this a CSV log with one header line?)"
                )
            if first == header[0] and [c.strip() for c in cells] == header:  # two logs concatenated
                restarts.append(built.count + len(chunk))  # type: ignore[union-attr]
                continue
            chunk.append(cells)
            lines.append(reader.line_num)
            if len(chunk) >= _CHUNK_ROWS:
                built.add(chunk, lines)  # type: ignore[union-attr]
                chunk, lines = [], []
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({_first_line(exc)})") from None
    if header is None or built is None:
        raise InputError(f"{path}: no CSV header found (the file holds no columns)")
    built.add(chunk, lines)
    return built.table(header, restarts)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _line_count(text: str) -> int:
    """Lines in ``text`` (ended by \\n, \\r or \\r\\n, the last one maybe by nothing): at least as many as its CSV rows."""
    return text.count("\n") + text.count("\r") - text.count("\r\n") + 1


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, as ``io.StringIO(text, newline="")`` gives them, without its copy.

    StringIO holds the text again at four bytes a character: for a log of
    200 MB, 800 MB more.
    """
    start, size = 0, len(text)
    while start < size:  # a megabyte of whole lines at a time, split by the regex engine
        end = text.find("\n", start + (1 << 20))
        end = size if end < 0 else end + 1
        yield from _LINE.findall(text, start, end)
        start = end


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
