"""The restricted formatter for evidence messages.

Rule files are data: an evidence template may name measured values and
parameters with a format spec (``{rise:.0%}``) and nothing else. Attribute
access, indexing, conversions and nested specs are rejected when the rule is
loaded, so a template can never reach into Python objects.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Iterable, Mapping

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMATTER = string.Formatter()
MISSING_TEXT = "n/a"


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
        names.append(name)
    return names


def check_template(template: str, allowed: Iterable[str]) -> None:
    """Raise ValueError naming the first unknown field, with the fields a template may use."""
    allowed = set(allowed)
    for name in template_names(template):
        if name not in allowed:
            from paramdoctor.config.loading import suggest

            raise ValueError(f"evidence uses unknown field {{{name}}}{suggest(name, allowed)}; available: {', '.join(sorted(allowed))}")


def render(template: str, values: Mapping[str, Any]) -> str:
    """Render a checked template; a value that is missing, None or does not fit its spec prints plainly."""
    out = []
    for literal, name, spec, _ in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        value = values.get(name)
        out.append(_format(value, spec or ""))
    return "".join(out)


def _format(value: Any, spec: str) -> str:
    if value is None:
        return MISSING_TEXT
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)
