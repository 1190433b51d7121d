"""JSON from outside, within limits: nesting depth and valid Unicode.

Every body flowbus parses from outside (CloudEvents, webhook bodies, REST bodies,
source messages) goes through :func:`loads`, so a document nested 10,000 levels deep
or holding a lone surrogate (``"\\ud800"``, which no UTF-8 encoder can write back)
is refused where it arrives with an error naming the limit, instead of failing
later, in a listing or an encoder, as a server error. Sizes are limited where the
bytes are read (the gateway's request limit, the bus's event limit).

>>> loads(b'{"a": [1, 2]}')
{'a': [1, 2]}
"""

from __future__ import annotations

import json
import re
from typing import Any

from events.errors import FlowbusError

MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_SOURCE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class JsonLimitExceeded(FlowbusError, ValueError):
    """A JSON document over a limit, or with text that is not valid Unicode."""


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses deep nesting and lone surrogates (a ``ValueError``)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise JsonLimitExceeded(f"nested deeper than {max_depth} levels") from None
    # A document cannot nest deeper than the number of brackets it opens: most bodies
    # (a list of a million numbers included) skip the walk.
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        _check_depth(value, max_depth)
    # A lone surrogate can only come from a \uDxxx escape or raw surrogate bytes: walk
    # the strings only when the body holds one of those.
    if (b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw) and _SURROGATE_SOURCE.search(raw):
        _check_texts(value)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonLimitExceeded` if ``value`` nests deeper than ``max_depth`` or
    holds a string (or key) that is not valid Unicode."""
    _check_depth(value, max_depth)
    _check_texts(value)


_CONTAINERS = (dict, list)


def _check_depth(value: Any, max_depth: int) -> None:
    """Level by level, containers only (a list of a million numbers is one step).

    A plain loop with a tuple for ``isinstance``: half the cost of a generator with a
    union type, and every batch of events walks this (its brackets exceed the limit).
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise JsonLimitExceeded(f"nested deeper than {max_depth} levels")
        below: list[Any] = []
        keep = below.append
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, _CONTAINERS):
                    keep(child)
        level = below


def _check_texts(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key in item:
                if isinstance(key, str):
                    _check_text(key)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        raise JsonLimitExceeded(
            f"text holds a lone surrogate (\\u{ord(found.group()):04x}), which is not valid "
            "Unicode")
