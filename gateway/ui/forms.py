"""The Run form of a deployment, generated from its parameter schema and checked before a run.

Each property of the JSON schema becomes one field: a number input for ``integer`` and
``number``, a checkbox for ``boolean``, a select for an ``enum``, a JSON text area for
arrays, objects and anything else, a text input for strings. Submitted values are
converted to those types; a value that does not convert, a missing required one or
an unknown name is an error shown next to its field, and no run is created.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_JSON_KINDS = ("array", "object")


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the Run form."""

    name: str
    kind: str  # integer, number, boolean, string, enum, json
    required: bool
    title: str
    description: str
    default: str
    choices: tuple[str, ...] = ()


def _kind(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "enum"
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if len(non_null) == 1 else None
    if kind in ("integer", "number", "boolean", "string"):
        return str(kind)
    return "json"


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    if kind == "boolean":
        return "true" if value else ""
    return str(value)


def fields_of(schema: Mapping[str, Any]) -> list[Field]:
    """The form fields of a parameter schema, in the schema's order."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    out: list[Field] = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = _kind(prop)
        out.append(Field(
            name=name, kind=kind, required=name in required,
            title=str(prop.get("title") or name), description=str(prop.get("description") or ""),
            default=_shown(prop.get("default"), kind),
            choices=tuple(str(c) for c in prop.get("enum") or ()),
        ))
    return out


def _convert(field: Field, raw: str, prop: Mapping[str, Any]) -> Any:
    if field.kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw[:50]!r}") from None
    if field.kind == "number":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw[:50]!r}") from None
    if field.kind == "boolean":
        return raw in ("true", "on", "1")
    if field.kind == "enum":
        for choice in prop.get("enum") or ():
            if str(choice) == raw:
                return choice
        raise ValueError(f"must be one of {', '.join(field.choices)}, got {raw[:50]!r}")
    if field.kind == "json":
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"must be JSON: {exc}") from None
        expected = prop.get("type")
        if expected == "array" and not isinstance(value, list):
            raise ValueError("must be a JSON array, e.g. [1, 2]")
        if expected == "object" and not isinstance(value, dict):
            raise ValueError('must be a JSON object, e.g. {"a": 1}')
        return value
    return raw


def parse_parameters(schema: Mapping[str, Any], form: Mapping[str, str]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters from submitted form values, and errors by field name (empty when valid).

    An empty optional field is left out, so the flow's own default applies.
    """
    props = schema.get("properties") or {}
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields_of(schema):
        raw = form.get(f"p.{field.name}")
        if field.kind == "boolean":
            params[field.name] = _convert(field, raw or "", props[field.name])
            continue
        if raw is None or raw.strip() == "":
            if field.required:
                errors[field.name] = "is required"
            continue
        try:
            params[field.name] = _convert(field, raw.strip() if field.kind != "string" else raw,
                                          props[field.name])
        except ValueError as exc:
            errors[field.name] = str(exc)
    return params, errors
