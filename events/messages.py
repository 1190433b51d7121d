"""Validation errors in the user's words: no pydantic jargon, no class names.

pydantic says "String should match pattern '^[a-z]+$'", "Value error, ...", "Input
should be a valid set" or "Unable to extract tag using discriminator <lambda>()";
:func:`plain` says what was expected instead. Every place that turns a
``ValidationError`` into a message for a person uses it.

>>> plain({"type": "missing", "msg": "Field required"})
'is required'
>>> plain({"type": "value_error", "msg": "Value error, must be positive"})
'must be positive'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

_VALID = re.compile(r"^Input should be a valid (\w+)(.*)$")
_KINDS = {
    "set": "a list of distinct values", "list": "a list", "tuple": "a list",
    "dictionary": "an object (a mapping)", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "datetime": "a date and time",
    "date": "a date", "url": "a URL", "uuid": "a UUID", "timedelta": "a duration",
}


def plain(error: Mapping[str, Any]) -> str:
    """One pydantic error (``exc.errors()`` item) as a short phrase."""
    kind = str(error.get("type", ""))
    message = str(error.get("msg", "is invalid"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind in ("value_error", "assertion_error"):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        return f"does not have the expected form (pattern {pattern})" if pattern else (
            "does not have the expected form")
    if kind == "union_tag_invalid":
        ctx = error.get("ctx") or {}
        tag = str(ctx.get("tag", "?"))
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
        close = difflib.get_close_matches(tag, expected, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"type {tag!r} is not known{hint}; one of: {', '.join(expected)}"
    if kind == "union_tag_not_found" or "discriminator" in message:
        return "has no 'type' saying what kind it is"
    if kind == "literal_error":
        return message.replace("Input should be", "must be")
    found = _VALID.match(message)
    if found:
        what = _KINDS.get(found.group(1), f"a valid {found.group(1)}")
        return f"must be {what}{found.group(2)}"
    return message.replace("Input should be", "must be").replace("String should", "must")


def where(error: Mapping[str, Any], default: str = "value") -> str:
    """The dotted location of an error (``triggers.0.expect``)."""
    return ".".join(str(p) for p in error.get("loc", ()) if not str(p).startswith("function-"))\
        or default
