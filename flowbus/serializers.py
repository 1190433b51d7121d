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
import json
from typing import Any, Protocol

from flowbus._json_hooks import (
    _decode,
    _encode,
    prefect_json_object_decoder,
    prefect_json_object_encoder,
)
from flowbus.exceptions import ConfigurationError, SerializationError


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
