"""RFC 9457 problem details: every error the gateway answers, and the middleware that makes them.

A handler raises :class:`Problem` (or lets an ``events`` error through); the
middleware turns it into ``application/problem+json``. Nothing unexpected ever
reaches the client as a stack trace: it is logged and answered as a bare 500.

>>> Problem(404, "no deployment named 'x'").status
404
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from events.errors import (
    BusUnavailable,
    EventTooLarge,
    FlowbusError,
    InvalidEvent,
    PublishFailed,
)
from events.messages import plain
from events.secretbox import SecretOpenError, SecretsKeyError
from events.templates import TemplateError
from gateway.types import Handler

log = logging.getLogger("flowbus.gateway")

PROBLEM_CONTENT_TYPE = "application/problem+json"
RETRY_AFTER_KEY = web.AppKey("retry_after", int)
MAX_BODY_KEY = web.AppKey("max_body", int)


class Problem(FlowbusError):
    """An HTTP error answer: status, what was wrong, and optional extra members/headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.members = members


def problem_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **members: Any
) -> web.Response:
    """The ``application/problem+json`` response for ``status``."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **members,
    }
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def invalid_input(exc: ValidationError, where: str = "body") -> Problem:
    """A 400 naming every field pydantic refused and why."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error.get("loc", ())) or where
        errors.append({"field": field, "reason": plain(error)})
    first = errors[0] if errors else {"field": where, "reason": "invalid"}
    return Problem(
        400, f"{where} field {first['field']!r}: {first['reason']}", errors=errors
    )


def _from_exception(exc: BaseException, retry_after: int) -> web.Response | None:
    if isinstance(exc, Problem):
        return problem_response(exc.status, exc.detail, exc.headers, **exc.members)
    if isinstance(exc, InvalidEvent):
        return problem_response(400, str(exc), attribute=exc.attribute, reason=exc.reason)
    if isinstance(exc, EventTooLarge):
        return problem_response(413, str(exc), limit=exc.limit, size=exc.size)
    if isinstance(exc, BusUnavailable | PublishFailed):
        return problem_response(
            503,
            f"{exc}; nothing was accepted, retry later",
            {"Retry-After": str(retry_after)},
        )
    if isinstance(exc, TimeoutError | ConnectionError) or _from_nats_client(exc):
        # NATS failures that reached us untranslated (KV writes while NATS is away).
        return problem_response(
            503,
            f"NATS did not answer ({type(exc).__name__}); nothing was changed, retry later",
            {"Retry-After": str(retry_after)},
        )
    if isinstance(exc, TemplateError):
        return problem_response(400, str(exc))
    if isinstance(exc, SecretsKeyError | SecretOpenError):
        # The gateway's key is missing or is not the one the secret was sealed with:
        # the operator's to fix, nothing the client sent was wrong; nothing was stored.
        log.error("secrets: %s", exc)
        return problem_response(503, f"{exc}; nothing was accepted or changed")
    return None


def _from_nats_client(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] == "nats"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as problem details; never a stack trace."""
    retry_after = int(request.app.get(RETRY_AFTER_KEY, 2))
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = _http_detail(exc, request)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problem_response(exc.status, detail, headers)
    except Exception as exc:
        response = _from_exception(exc, retry_after)
        if response is not None:
            return response
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem_response(500, "internal error; it has been logged")


def _http_detail(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"nothing at {request.path}"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if exc.status == 413:
        return (
            f"request body is over the limit of {request.app.get(MAX_BODY_KEY, '?')} bytes "
            "(setting FLOWBUS_GATEWAY_REQUEST_MAX_BYTES)"
        )
    return exc.text or HTTPStatus(exc.status).phrase


