"""Limits every request meets before a handler sees it.

Header values must be ASCII (RFC 9110 allows only visible ASCII in new fields; a
value that is not cannot be a key, a signature or a CloudEvents attribute, and
letting it through turned a stray byte into a server error). Body limits are the
request size (aiohttp's ``client_max_size``) and :mod:`events.jsonlimits` for JSON.
"""

from __future__ import annotations

from aiohttp import web

from gateway.problems import Problem
from gateway.types import Handler, Middleware

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def host_name(header: str) -> str:
    """The name part of a ``Host`` header, lowercased, without the port."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def host_middleware(allowed: list[str]) -> Middleware:
    """403 for a ``Host`` that is not one of ``allowed`` (DNS rebinding defence)."""
    names = {h.lower() for h in allowed}

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = host_name(request.headers.get("Host", ""))
        local = "localhost" in names and name.endswith(".localhost")
        if name not in names and not local:
            raise Problem(403, f"Host {name[:100]!r} is not served here; use one of "
                          f"{', '.join(sorted(names))} (setting FLOWBUS_GATEWAY_ALLOWED_HOSTS)")
        return await handler(request)

    return check_host


@web.middleware
async def ascii_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 naming the header when a header value is not ASCII."""
    for name, value in request.headers.items():
        if not value.isascii():
            raise Problem(400, f"header {name[:60]!r} must be ASCII text")
    return await handler(request)
