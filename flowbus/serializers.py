"""Result serializers: JSON first, cloudpickle when asked for.

JSON keeps persisted results readable from any language; it also round-trips
`datetime`, `date`, `UUID`, `Decimal`, `set` and `bytes` through tagged objects.
Anything else fails with a `SerializationError` naming the type; pass
``result_serializer="cloudpickle"`` for arbitrary Python objects.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from flowbus.exceptions import ConfigurationError, SerializationError

_TAG = "__flowbus_type__"


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _encode(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, set | frozenset):
        return {_TAG: "set", "v": [_encode_item(v) for v in value]}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    raise SerializationError(
        f"A result of type {type(value).__module__}.{type(value).__qualname__} cannot be "
        "serialized as JSON. Return JSON-compatible data, or set "
        "result_serializer='cloudpickle' on the task or flow."
    )


def _encode_item(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _encode(value)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _dt.datetime.fromisoformat,
    "date": _dt.date.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "set": set,
    "bytes": base64.b64decode,
}


def _decode(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG)
    if kind is None or len(obj) != 2:
        return obj
    return _DECODERS[kind](obj["v"])


class JSONSerializer:
    """JSON with a few tagged types; the default."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, default=_encode, separators=(",", ":")).encode()
        except ValueError as exc:  # e.g. circular references
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be serialized as JSON: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        return json.loads(data, object_hook=_decode)


class PickleSerializer:
    """cloudpickle: any Python object, readable only by Python (and only trusted data)."""

    name = "cloudpickle"

    def dumps(self, value: Any) -> bytes:
        import cloudpickle  # lazy: keeps `import flowbus` fast

        try:
            return cloudpickle.dumps(value)  # type: ignore[no-any-return]
        except Exception as exc:
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        import cloudpickle

        return cloudpickle.loads(data)


_BY_NAME: dict[str, Serializer] = {
    "json": JSONSerializer(),
    "cloudpickle": PickleSerializer(),
    "pickle": PickleSerializer(),
}


def resolve_serializer(value: str | Serializer | None) -> Serializer:
    """The serializer for an option value: a name ("json", "cloudpickle") or an instance."""
    if value is None:
        return _BY_NAME["json"]
    if isinstance(value, str):
        try:
            return _BY_NAME[value]
        except KeyError:
            raise ConfigurationError(
                f"Unknown result_serializer {value!r}; use one of {sorted(_BY_NAME)} "
                "or an object with dumps/loads."
            ) from None
    return value


__all__ = ["JSONSerializer", "PickleSerializer", "Serializer", "resolve_serializer"]
