"""Declared endpoints: one description drives validation, auth and the OpenAPI document.

Each endpoint names its scope, its query and body models and its response model;
:class:`ApiRouter` parses and validates the request before the handler runs, so
a handler only ever sees valid pydantic objects, and :mod:`gateway.api.openapi`
describes exactly what is enforced.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from events import jsonlimits
from gateway.auth import Principal, Scope
from gateway.context import Gateway, gateway_of
from gateway.problems import Problem, invalid_input

PREFIX = "/api/v1"
# What a NATS KV key may hold; anything else can name no stored object.
_KEY = re.compile(r"[-_=.A-Za-z0-9]{1,256}")


@dataclass(frozen=True, slots=True)
class Call:
    """A validated API request as a handler sees it."""

    request: web.Request
    gateway: Gateway
    principal: Principal
    body: Any
    query: Any

    def path(self, name: str) -> str:
        return self.request.match_info[name]


Result = BaseModel | web.StreamResponse | None
EndpointHandler = Callable[[Call], Awaitable[Result]]


@dataclass(frozen=True)
class Endpoint:
    """One API operation."""

    method: str
    path: str
    handler: EndpointHandler
    scope: Scope
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    stream: str | None

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def check_key(value: str, what: str) -> str:
    """A path value usable as a KV key; 404 (it cannot exist) otherwise."""
    if _KEY.fullmatch(value) is None or value.startswith(".") or value.endswith("."):
        raise Problem(404, f"no {what} named {value[:100]!r}")
    return value


class ApiRouter:
    """Collects endpoints, then installs them on an app."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: Scope,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        stream: str | None = None,
    ) -> Callable[[EndpointHandler], EndpointHandler]:
        def register(fn: EndpointHandler) -> EndpointHandler:
            self.endpoints.append(
                Endpoint(method, path, fn, scope, summary, body, query, response, status,
                         errors, stream)
            )
            return fn

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, PREFIX + endpoint.path, _handler(endpoint))


def _handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        gateway = gateway_of(request)
        principal = await gateway.auth.require(request.headers, endpoint.scope)
        query = _parse_query(endpoint.query, request)
        body = await _parse_body(endpoint.body, request)
        result = await endpoint.handler(Call(request, gateway, principal, body, query))
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.Response(
            status=endpoint.status,
            body=result.model_dump_json().encode(),
            content_type="application/json",
        )

    handle.__name__ = endpoint.operation_id
    return handle


def _parse_query(model: type[BaseModel] | None, request: web.Request) -> Any:
    if model is None:
        return None
    values: dict[str, str] = {}
    for key in request.query:
        values.setdefault(key, request.query[key])
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_input(exc, "query") from None


async def _parse_body(model: type[BaseModel] | None, request: web.Request) -> Any:
    if model is None:
        return None
    raw = await request.read()
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not raw:
        # No body at all: fine when every field has a default (e.g. a run with no overrides).
        try:
            return model.model_validate({})
        except ValidationError:
            raise Problem(400, "a JSON body is required") from None
    if media != "application/json":
        raise Problem(415, f"Content-Type must be application/json, got {media or 'none'!r}")
    try:
        data = jsonlimits.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, "body") from None
