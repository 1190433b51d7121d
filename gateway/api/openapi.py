"""The OpenAPI 3.1 document, generated from the endpoints' own pydantic models.

The same :class:`~gateway.api.routing.Endpoint` records that validate requests
describe them here, so the document cannot drift from what is enforced.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from events.cloudevent import BATCH_MAX_EVENTS
from gateway.api.routing import PREFIX, Endpoint

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")
_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}
_COMMON_ERRORS = (400, 401, 403, 429)


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        params.append({
            "name": name, "in": "query", "required": name in required,
            "description": prop.get("description", ""), "schema": prop,
        })
    return params


def _operation(ep: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.operation_id,
        "summary": ep.summary,
        "x-scope": ep.scope.value,
        "parameters": [
            {"name": n, "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
            for n in _PATH_PARAM.findall(ep.path)
        ],
    }
    if ep.query is not None:
        op["parameters"] += _query_parameters(ep.query)
    if ep.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(ep.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    if ep.stream == "websocket":
        responses["101"] = {"description": "switching to WebSocket"}
    elif ep.status == 204:
        responses["204"] = {"description": "done"}
    elif ep.response is not None:
        responses[str(ep.status)] = {
            "description": "success",
            "content": {"application/json": {"schema": refs[(ep.response, "serialization")]}},
        }
    if ep.stream is not None and ep.stream != "websocket":
        responses.setdefault("200", {"description": "success", "content": {}})
        responses["200"].setdefault("content", {})[ep.stream] = {"schema": {"type": "string"}}
    for status in sorted(set(_COMMON_ERRORS + ep.errors + (503,))):
        responses[str(status)] = _problem("error, as problem details")
    op["responses"] = responses
    return op


_CLOUDEVENT_SCHEMA = {
    "type": "object",
    "description": "a CloudEvents 1.0 event in JSON (structured mode)",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "maxLength": 4096},
        "source": {"type": "string", "minLength": 1, "maxLength": 4096},
        "type": {"type": "string", "pattern": r"^[^\s.*>]+(\.[^\s.*>]+)*$", "maxLength": 255},
        "subject": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "data": {},
    },
}


def _ingest_path() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "post_events",
            "summary": "Send CloudEvents (structured, binary with ce-* headers, or batch)",
            "x-scope": "ingest",
            "requestBody": {"required": True, "content": {
                "application/cloudevents+json": {"schema": _CLOUDEVENT_SCHEMA},
                "application/cloudevents-batch+json": {
                    "schema": {"type": "array", "items": _CLOUDEVENT_SCHEMA, "maxItems": BATCH_MAX_EVENTS}
                },
            }},
            "responses": {
                "202": {"description": "stored; the event ids", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "ids": {"type": "array", "items": {"type": "string"}}}}}}},
                **{str(s): _problem("error") for s in (400, 401, 403, 413, 415, 429, 503)},
            },
        }
    }


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (plus the CloudEvents ingest)."""
    inputs: list[tuple[type[BaseModel], Any]] = []
    for ep in endpoints:
        if ep.body is not None:
            inputs.append((ep.body, "validation"))
        if ep.response is not None:
            inputs.append((ep.response, "serialization"))
    refs, top = models_json_schema(list(dict.fromkeys(inputs)), ref_template=_REF)
    schemas = dict(top.get("$defs", {}))
    schemas["Problem"] = _PROBLEM_SCHEMA
    paths: dict[str, dict[str, Any]] = {"/events": _ingest_path()}
    for ep in endpoints:
        paths.setdefault(PREFIX + ep.path, {})[ep.method.lower()] = _operation(ep, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowbus gateway", "version": "1",
                 "description": "CloudEvents ingest, webhooks and the flowbus REST API"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@lru_cache(maxsize=1)
def _cached() -> dict[str, Any]:
    from gateway.api import routers

    return openapi_document([ep for r in routers() for ep in r.endpoints])


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json`` (no key needed: it describes, it grants nothing)."""
    return web.json_response(_cached())
