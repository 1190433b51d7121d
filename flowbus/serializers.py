"""Result serializers: JSON first, cloudpickle when asked for.

JSON keeps persisted results readable from any language; it also round-trips
`datetime`, `date`, `UUID`, `Decimal`, `set` and `bytes` through tagged objects, and
exceptions, pydantic models and dataclasses as Prefect's JSON writes them
(``{"__class__": "module.Name", "data": ...}``, exceptions as ``__exc_type__`` and
message; an IO object as a placeholder). Anything else fails with a
`SerializationError` naming the type; pass ``result_serializer="cloudpickle"`` for
arbitrary Python objects. `CompressedSerializer` compresses another serializer's
output (``result_serializer="compressed/json"`` or ``"compressed/pickle"``).

The classes (`Serializer`, `JSONSerializer`, `PickleSerializer`,
`CompressedSerializer`, ...) are pydantic models as Prefect's
(`flowbus._serializer_models`), loaded on first use; `resolve_serializer` gives the
default serializers by name without them, so ``import flowbus`` stays light.

`prefect_json_object_encoder` / `_decoder` are Prefect's JSON hooks for objects, to
pass to `json.dumps(default=)` / `json.loads(object_hook=)`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from flowbus._json_hooks import (
    _decode,
    _encode,
    prefect_json_object_decoder,
    prefect_json_object_encoder,
)
from flowbus.exceptions import ConfigurationError, SerializationError

if TYPE_CHECKING:
    from flowbus._serializer_models import (
        CompressedJSONSerializer,
        CompressedPickleSerializer,
        CompressedSerializer,
        JSONSerializer,
        PickleSerializer,
        Serializer,
    )


class SerializerLike(Protocol):
    """What any serializer has: a `name` (stored with records) and `dumps` / `loads`."""

    @property
    def name(self) -> str: ...

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def unwrap_pickle(data: bytes) -> bytes:
    """The pickle in `data`: `PickleSerializer` writes it base64-encoded (as Prefect's),
    the ``"cloudpickle"`` serializer by name as it is. A pickle of protocol 2 or newer
    starts with the byte 0x80, which base64 text never holds."""
    import base64

    return data if data[:1] == b"\x80" else base64.decodebytes(data)


def _import_path(path: str | None, what: str) -> Any:
    if path is None or callable(path):
        return path
    from flowbus.utilities.importtools import from_qualified_name

    try:
        return from_qualified_name(path)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what} {path!r} does not import: {exc}") from None


class _DefaultJSON:
    """The ``"json"`` serializer by name, without pydantic: compact JSON with flowbus's
    tagged types and Prefect's object shapes (`JSONSerializer()` writes Prefect's
    shapes only); it reads what either writes."""

    name = "json"
    type = "json"  # Prefect's `Serializer.type`

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, default=_encode, separators=(",", ":")).encode()
        except ValueError as exc:  # e.g. circular references
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be serialized as JSON: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        return json.loads(data.decode(), object_hook=_decode)

    def __repr__(self) -> str:
        return "JSONSerializer()"


class _DefaultPickle:
    """The ``"cloudpickle"`` serializer by name: `PickleSerializer()`'s pickle, written
    without base64; it reads both."""

    name = "cloudpickle"
    type = "pickle"

    def dumps(self, value: Any) -> bytes:
        import cloudpickle

        try:
            return cloudpickle.dumps(value)  # type: ignore[no-any-return]
        except Exception as exc:
            raise SerializationError(f"A result of type {type(value).__qualname__} cannot be pickled: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        import cloudpickle

        return cloudpickle.loads(unwrap_pickle(data))

    def __repr__(self) -> str:
        return "PickleSerializer()"


# Serializer classes by ``type`` (filled as the classes are defined), and serializers
# by name: what ``result_serializer="..."`` and stored records name.
_TYPES: dict[str, Any] = {}
_BY_NAME: dict[str, SerializerLike] = {"json": _DefaultJSON(), "cloudpickle": _DefaultPickle()}
_BY_NAME["pickle"] = _BY_NAME["cloudpickle"]


def resolve_serializer(value: str | SerializerLike | None) -> SerializerLike:
    """The serializer for an option value: a name ("json", "cloudpickle") or an instance."""
    if value is None:
        return _BY_NAME["json"]
    if isinstance(value, str):
        inner, plus, lib = value.removeprefix("compressed/").partition("+")
        if value.startswith("compressed/") and inner in _BY_NAME:
            from flowbus import _serializer_models as models

            model = {"json": models.JSONSerializer, "pickle": models.PickleSerializer}.get(inner.replace("cloud", ""))
            wrapped = model() if model is not None else _BY_NAME[inner]
            return models.CompressedSerializer(serializer=wrapped, compressionlib=lib if plus else "lzma")
        try:
            return _BY_NAME[value]
        except KeyError:
            raise ConfigurationError(
                f"Unknown result_serializer {value!r}; use one of {sorted(_BY_NAME)} "
                "(or 'compressed/' and one of them) or an object with dumps/loads."
            ) from None
    return value


_MODELS = frozenset(
    {
        "CompressedJSONSerializer",
        "CompressedPickleSerializer",
        "CompressedSerializer",
        "JSONSerializer",
        "PickleSerializer",
        "Serializer",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from flowbus import _serializer_models

        return getattr(_serializer_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CompressedJSONSerializer",
    "CompressedPickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "SerializerLike",
    "prefect_json_object_decoder",
    "prefect_json_object_encoder",
    "resolve_serializer",
    "unwrap_pickle",
]
