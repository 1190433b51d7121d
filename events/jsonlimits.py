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


class JsonLimitExceeded(FlowbusError, ValueError):
    """A JSON document over a limit, or with text that is not valid Unicode."""


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses deep nesting and lone surrogates (a ``ValueError``)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise JsonLimitExceeded(f"nested deeper than {max_depth} levels") from None
    check(value, max_depth=max_depth)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonLimitExceeded` if ``value`` nests deeper than ``max_depth`` or
    holds a string (or key) that is not valid Unicode."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonLimitExceeded(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        raise JsonLimitExceeded(
            f"text holds a lone surrogate (\\u{ord(found.group()):04x}), which is not valid "
            "Unicode")
