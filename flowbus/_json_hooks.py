"""JSON hooks for objects JSON lacks, used by `flowbus.serializers.JSONSerializer`.

flowbus's tagged types (``{"__flowbus_type__": "uuid", "v": ...}``: datetime, date,
UUID, Decimal, set, bytes) and Prefect's object shapes
(``{"__class__": "module.Name", "data": ...}``, exceptions as ``__exc_type__`` and
message, an IO object as a placeholder): `_encode` writes the first for its types and
the second for exceptions, pydantic models, dataclasses and IO objects; `_decode`
reads both.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import io
import sys
import uuid
from collections.abc import Callable
from typing import Any

from flowbus.exceptions import SerializationError

_TAG = "__flowbus_type__"


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
    if isinstance(value, BaseException | io.IOBase) or _is_model_like(value):
        return prefect_json_object_encoder(value)
    raise SerializationError(
        f"A result of type {type(value).__module__}.{type(value).__qualname__} cannot be "
        "serialized as JSON. Return JSON-compatible data, or set "
        "result_serializer='cloudpickle' on the task or flow."
    )


def _is_model_like(value: Any) -> bool:
    """A pydantic model or a dataclass instance: JSON holds it as its class and fields."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


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
        if "__class__" in obj or "__exc_type__" in obj:  # an object, as Prefect's JSON writes it
            return prefect_json_object_decoder(obj)
        return obj
    return _DECODERS[kind](obj["v"])


def prefect_json_object_encoder(obj: Any) -> Any:
    """`json.dumps(default=...)` for objects JSON lacks: an exception as its type and
    message, an IO object as a placeholder (its content is not read), anything else
    (pydantic models, dataclasses, ...) as its class path and its JSON-able data."""
    from flowbus.utilities.importtools import to_qualified_name

    if isinstance(obj, BaseException):
        return {"__exc_type__": to_qualified_name(type(obj)), "message": str(obj)}
    if isinstance(obj, io.IOBase):
        placeholder = f"<Prefect IOStream Placeholder: type={type(obj).__name__}, repr={obj!r} (original content not read)>"
        return {"__class__": to_qualified_name(type(obj)), "data": placeholder}
    from pydantic_core import to_jsonable_python

    kind = type(obj)
    origin = getattr(obj, "__pydantic_generic_metadata__", {}).get("origin")  # Model[int] -> Model
    return {"__class__": to_qualified_name(origin or kind), "data": to_jsonable_python(obj)}


def prefect_json_object_decoder(result: dict[str, Any]) -> Any:
    """`json.loads(object_hook=...)` reading what `prefect_json_object_encoder` wrote.

    A ``__class__`` that does not import leaves the dict as is; an ``__exc_type__``
    that is not an importable exception class raises `ValueError`. flowbus's tagged
    types (what the ``"json"`` serializer by name writes) are read too.
    """
    from flowbus.utilities.importtools import from_qualified_name

    if len(result) == 2 and result.get(_TAG) in _DECODERS:
        return _DECODERS[result[_TAG]](result["v"])

    if "__class__" in result:
        try:
            cls = from_qualified_name(result["__class__"])
        except (ImportError, AttributeError):
            return result
        from pydantic import TypeAdapter

        return TypeAdapter(cls).validate_python(result["data"])
    if "__exc_type__" in result:
        try:
            exc_type = from_qualified_name(result["__exc_type__"])
        except (ImportError, AttributeError):
            exc_type = None
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise ValueError(f"Invalid exception type: {result['__exc_type__']!r}")
        return exc_type(result["message"])
    return result
