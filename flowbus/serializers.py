"""Result serializers: JSON first, cloudpickle when asked for.

JSON keeps persisted results readable from any language; it also round-trips
`datetime`, `date`, `UUID`, `Decimal`, `set` and `bytes` through tagged objects, and
exceptions, pydantic models and dataclasses as Prefect's JSON writes them
(`prefect_json_object_encoder`: ``{"__class__": "module.Name", "data": ...}``,
exceptions as ``__exc_type__`` and message; an IO object as a placeholder). Anything
else fails with a `SerializationError` naming the type; pass
``result_serializer="cloudpickle"`` for arbitrary Python objects.
`CompressedSerializer` compresses another serializer's output
(``result_serializer="compressed/json"`` or ``"compressed/pickle"``).

`prefect_json_object_encoder` / `_decoder` are Prefect's JSON hooks for objects
(``{"__class__": "module.Name", "data": ...}``, exceptions as ``__exc_type__``), to
pass to `json.dumps(default=)` / `json.loads(object_hook=)`; flowbus's own JSON
serializer uses them for the objects its tagged format does not cover, and reads
both shapes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import io
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from flowbus.exceptions import ConfigurationError, SerializationError

_TAG = "__flowbus_type__"


class Serializer(Protocol):
    """What a serializer has: a `name` (stored with records) and `dumps` / `loads`.

    Any object with these serves. A class deriving from `Serializer` with a string
    ``type`` (Prefect's way) is named by it and registered under it when it can be
    built without arguments, so ``result_serializer="<type>"`` finds it::

        class IntSerializer(Serializer):
            type = "int-bytes"

            def dumps(self, value): return value.to_bytes(8, "little")
            def loads(self, data): return int.from_bytes(data, "little")
    """

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _register_subclass(cls: Any, **kwargs: Any) -> None:
    super(Serializer, cls).__init_subclass__(**kwargs)
    kind = cls.__dict__.get("type")
    if getattr(cls, "_is_protocol", False) or not isinstance(kind, str):
        return
    if "name" not in cls.__dict__:
        cls.name = kind
    try:
        _BY_NAME[kind] = cls()
    except TypeError:  # needs arguments: usable as an instance, not by name
        pass


# Set after the class so that type checkers do not read it as a protocol member.
Serializer.__init_subclass__ = classmethod(_register_subclass)  # type: ignore[assignment,method-assign,arg-type]


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


_TAGGED: Any = object()  # JSONSerializer's default hooks: flowbus's tagged types


def _import_path(path: str | None, what: str) -> Any:
    if path is None or callable(path):
        return path
    from flowbus.utilities.importtools import from_qualified_name

    try:
        return from_qualified_name(path)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{what} {path!r} does not import: {exc}") from None


class JSONSerializer:
    """JSON with a few tagged types; the default.

    Prefect's options are accepted: ``jsonlib`` (the module whose ``dumps`` / ``loads``
    are used, e.g. ``"orjson"``), ``object_encoder`` / ``object_decoder`` (import paths
    of the ``default`` / ``object_hook`` functions, None for none; by default
    flowbus's tagged types), and ``dumps_kwargs`` / ``loads_kwargs``. A record
    written with other options is read back with them only through the same
    serializer object: stored records name the serializer ``"json"``.
    """

    name = "json"

    def __init__(
        self,
        jsonlib: str = "json",
        object_encoder: str | None = _TAGGED,
        object_decoder: str | None = _TAGGED,
        dumps_kwargs: dict[str, Any] | None = None,
        loads_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import importlib

        if "default" in (dumps_kwargs or {}) or "object_hook" in (loads_kwargs or {}):
            raise ValueError("pass the hooks as object_encoder= / object_decoder=, not in dumps_kwargs / loads_kwargs")
        self.jsonlib = jsonlib
        self._lib = json if jsonlib == "json" else importlib.import_module(jsonlib)
        self.object_encoder, self.object_decoder = object_encoder, object_decoder
        self.dumps_kwargs, self.loads_kwargs = dict(dumps_kwargs or {}), dict(loads_kwargs or {})

    def _dumps_options(self) -> dict[str, Any]:
        if self.object_encoder is _TAGGED:
            return {"default": _encode, "separators": (",", ":")} | self.dumps_kwargs
        encoder = _import_path(self.object_encoder, "object_encoder")
        return ({} if encoder is None else {"default": encoder}) | self.dumps_kwargs

    def _loads_options(self) -> dict[str, Any]:
        if self.object_decoder is _TAGGED:
            return {"object_hook": _decode} | self.loads_kwargs
        decoder = _import_path(self.object_decoder, "object_decoder")
        return ({} if decoder is None else {"object_hook": decoder}) | self.loads_kwargs

    def dumps(self, value: Any) -> bytes:
        try:
            out = self._lib.dumps(value, **self._dumps_options())
        except ValueError as exc:  # e.g. circular references
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be serialized as JSON: {exc}"
            ) from exc
        return out.encode() if isinstance(out, str) else out

    def loads(self, data: bytes) -> Any:
        return self._lib.loads(data.decode() if self.jsonlib == "json" else data, **self._loads_options())


class PickleSerializer:
    """cloudpickle: any Python object, readable only by Python (and only trusted data).

    ``picklelib``: the import path of another module with ``dumps`` / ``loads``
    (e.g. ``"pickle"``).
    """

    name = "cloudpickle"

    def __init__(self, picklelib: str = "cloudpickle") -> None:
        if not isinstance(picklelib, str):
            raise ValueError(f"picklelib must be an import path (a str), got {type(picklelib).__name__}")
        if picklelib != "cloudpickle":  # cloudpickle itself is imported on first use
            import importlib

            module = importlib.import_module(picklelib)
            for method in ("dumps", "loads"):
                if not callable(getattr(module, method, None)):
                    raise ValueError(f"Pickle library at {picklelib!r} does not have a {method!r} method.")
        self.picklelib = picklelib

    def _lib(self) -> Any:
        import importlib

        return importlib.import_module(self.picklelib)  # lazy: keeps `import flowbus` fast

    def dumps(self, value: Any) -> bytes:
        try:
            return self._lib().dumps(value)  # type: ignore[no-any-return]
        except Exception as exc:
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        return self._lib().loads(data)


class CompressedSerializer:
    """Another serializer's output compressed with `compressionlib` (a module with
    ``compress`` / ``decompress``: ``lzma``, the default, ``zlib``, ``bz2`` ...), base64-encoded.

    Example: ``@task(result_serializer=CompressedSerializer(serializer="json", compressionlib="zlib"))``.
    """

    def __init__(self, serializer: Serializer | str, compressionlib: str = "lzma") -> None:
        import importlib

        self.serializer = resolve_serializer(serializer)
        module = importlib.import_module(compressionlib) if isinstance(compressionlib, str) else None
        if module is None or not all(callable(getattr(module, f, None)) for f in ("compress", "decompress")):
            raise ValueError(f"compressionlib {compressionlib!r} must be a module with compress and decompress")
        self.compressionlib = compressionlib
        suffix = "" if compressionlib == "lzma" else f"+{compressionlib}"
        self.name = f"compressed/{self.serializer.name}{suffix}"

    def _lib(self) -> Any:
        import importlib

        return importlib.import_module(self.compressionlib)

    def dumps(self, value: Any) -> bytes:
        return base64.encodebytes(self._lib().compress(self.serializer.dumps(value)))

    def loads(self, data: bytes) -> Any:
        return self.serializer.loads(self._lib().decompress(base64.decodebytes(data)))


class CompressedPickleSerializer(CompressedSerializer):
    """`CompressedSerializer` of cloudpickle (``"compressed/pickle"``)."""

    def __init__(self, serializer: Serializer | str = "cloudpickle", compressionlib: str = "lzma") -> None:
        super().__init__(serializer, compressionlib)


class CompressedJSONSerializer(CompressedSerializer):
    """`CompressedSerializer` of JSON (``"compressed/json"``)."""

    def __init__(self, serializer: Serializer | str = "json", compressionlib: str = "lzma") -> None:
        super().__init__(serializer, compressionlib)


def prefect_json_object_encoder(obj: Any) -> Any:
    """`json.dumps(default=...)` for objects JSON lacks: an exception as its type and
    message, an IO object as a placeholder (its content is not read), anything else
    (pydantic models, dataclasses, ...) as its class path and its JSON-able data."""
    from flowbus.utilities.importtools import to_qualified_name

    if isinstance(obj, BaseException):
        return {"__exc_type__": to_qualified_name(type(obj)), "message": str(obj)}
    if isinstance(obj, io.IOBase):
        placeholder = f"<IOStream placeholder: type={type(obj).__name__}, repr={obj!r} (content not read)>"
        return {"__class__": to_qualified_name(type(obj)), "data": placeholder}
    from pydantic_core import to_jsonable_python

    kind = type(obj)
    origin = getattr(obj, "__pydantic_generic_metadata__", {}).get("origin")  # Model[int] -> Model
    return {"__class__": to_qualified_name(origin or kind), "data": to_jsonable_python(obj)}


def prefect_json_object_decoder(result: dict[str, Any]) -> Any:
    """`json.loads(object_hook=...)` reading what `prefect_json_object_encoder` wrote.

    A ``__class__`` that does not import leaves the dict as is; an ``__exc_type__``
    that is not an importable exception class raises `ValueError`.
    """
    from flowbus.utilities.importtools import from_qualified_name

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
        inner, plus, lib = value.removeprefix("compressed/").partition("+")
        if value.startswith("compressed/") and inner in _BY_NAME:
            return CompressedSerializer(_BY_NAME[inner], lib if plus else "lzma")
        try:
            return _BY_NAME[value]
        except KeyError:
            raise ConfigurationError(
                f"Unknown result_serializer {value!r}; use one of {sorted(_BY_NAME)} "
                "(or 'compressed/' and one of them) or an object with dumps/loads."
            ) from None
    return value


__all__ = [
    "CompressedJSONSerializer",
    "CompressedPickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "prefect_json_object_decoder",
    "prefect_json_object_encoder",
    "resolve_serializer",
]
