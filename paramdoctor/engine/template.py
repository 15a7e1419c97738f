"""The restricted formatter for evidence messages.

Rule files are data: an evidence template may name measured values and
parameters with a format spec (``{rise:.0%}``) and nothing else. Attribute
access, indexing, conversions and nested specs are rejected when the rule is
loaded, so a template can never reach into Python objects. A template is
also bounded, so that one rule cannot blow up a report or ``--json``: a
field's width and precision are at most :data:`MAX_SPEC_NUMBER`, the template
at most :data:`MAX_TEMPLATE_CHARS` characters, and a rendered message (whose
values may be strings from the run) is cut at :data:`MAX_RENDERED_CHARS`.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Iterable, Mapping

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMATTER = string.Formatter()
MISSING_TEXT = "n/a"
MAX_SPEC_NUMBER = 30
"""Largest width or precision in a format spec (``{lr:.3g}``, ``{epoch:>4}``)."""
MAX_TEMPLATE_CHARS = 1000
"""Longest evidence template a rule file may hold (the built-in ones are under 300)."""
MAX_RENDERED_CHARS = 2000
"""Longest rendered message; longer ones are cut and end with :data:`TRUNCATED`."""
TRUNCATED = " [... truncated]"
# Python's format-spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[a-zA-Z%]?$", re.S)


def template_names(template: str) -> list[str]:
    """The names a template uses; raises ValueError for anything but ``{name}`` / ``{name:spec}``."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name):
            raise ValueError(f"template field {{{name}}} must be a plain name (no attribute access, indexing or positional fields)")
        if conversion:
            raise ValueError(f"template field {{{name}!{conversion}}}: conversions are not allowed")
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"template field {{{name}:{spec}}}: nested format specs are not allowed")
        problem = spec_problem(spec or "")
        if problem:
            raise ValueError(f"template field {{{name}:{spec}}}: {problem}")
        names.append(name)
    return names


def spec_problem(spec: str) -> str | None:
    """Why a format spec is refused (not a standard spec, or a width/precision above the limit); None if fine."""
    if not spec:
        return None
    match = _SPEC.match(spec)
    if match is None:
        return "not a format spec (e.g. .3g, .1%, >6)"
    for part in ("width", "precision"):
        number = match.group(part)
        if number and int(number) > MAX_SPEC_NUMBER:
            return f"{part} {int(number)} is above the limit of {MAX_SPEC_NUMBER}"
    return None


def check_template(template: str, allowed: Iterable[str]) -> None:
    """Raise ValueError for a template that is too long or names an unknown field (listing those it may use)."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"template is {len(template)} characters long, above the limit of {MAX_TEMPLATE_CHARS}")
    allowed = set(allowed)
    for name in template_names(template):
        if name not in allowed:
            from paramdoctor.config.loading import suggest

            raise ValueError(f"evidence uses unknown field {{{name}}}{suggest(name, allowed)}; available: {', '.join(sorted(allowed))}")


def render(template: str, values: Mapping[str, Any]) -> str:
    """Render a checked template; a value that is missing, None or does not fit its spec prints plainly.

    The result is at most :data:`MAX_RENDERED_CHARS` long (cut with :data:`TRUNCATED`),
    and no piece is built longer than that, whatever the template or values.
    """
    out: list[str] = []
    length = 0
    for literal, name, spec, _ in _FORMATTER.parse(template):
        pieces = [literal] if name is None else [literal, _format(values.get(name), spec or "")]
        for piece in pieces:
            out.append(piece)
            length += len(piece)
        if length > MAX_RENDERED_CHARS:
            break
    text = "".join(out)
    if len(text) > MAX_RENDERED_CHARS:
        text = text[: MAX_RENDERED_CHARS - len(TRUNCATED)] + TRUNCATED
    return text


def _format(value: Any, spec: str) -> str:
    if value is None:
        return MISSING_TEXT
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if spec_problem(spec):  # an unchecked template: never build a huge piece
        spec = ""
    try:
        text = format(value, spec)
    except (ValueError, TypeError):
        text = str(value)
    return text[: MAX_RENDERED_CHARS + 1]
