"""Limits every request meets before a handler sees it.

Header values must be ASCII (RFC 9110 allows only visible ASCII in new fields; a
value that is not cannot be a key, a signature or a CloudEvents attribute, and
letting it through turned a stray byte into a server error). Body limits are the
request size (aiohttp's ``client_max_size``) and :mod:`events.jsonlimits` for JSON.
"""

from __future__ import annotations

from aiohttp import web

from gateway.problems import Problem
from gateway.types import Handler


@web.middleware
async def ascii_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 naming the header when a header value is not ASCII."""
    for name, value in request.headers.items():
        if not value.isascii():
            raise Problem(400, f"header {name[:60]!r} must be ASCII text")
    return await handler(request)
