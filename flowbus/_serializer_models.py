"""The serializer classes of `flowbus.serializers`, as Prefect's: pydantic models.

Loaded when one of them is first asked for (``from flowbus.serializers import
JSONSerializer``): ``import flowbus`` does not load pydantic, and a run whose results
use the default serializers by name never needs these classes.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic._internal._model_construction import ModelMetaclass
from pydantic_core import PydanticCustomError

from flowbus.exceptions import SerializationError
from flowbus.serializers import _BY_NAME, _TYPES, _import_path, resolve_serializer, unwrap_pickle


class _SerializerMeta(ModelMetaclass):
    """Lets a subclass name its ``type`` (and ``name``) as a plain class attribute,
    ``type = "int-bytes"``, as well as Prefect's ``type: str = "int-bytes"``."""

    def __new__(mcs, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        annotations = namespace.setdefault("__annotations__", {})
        if isinstance(namespace.get("type"), str) and "type" not in annotations:
            annotations["type"] = str
        if isinstance(namespace.get("name"), str) and "name" not in annotations:
            annotations["name"] = ClassVar[str]
        return super().__new__(mcs, cls_name, bases, namespace, **kwargs)


class Serializer(BaseModel, metaclass=_SerializerMeta):
    """A result serializer, a pydantic model as Prefect's: a ``type`` (its registered
    name), options as fields (others are refused), and `dumps` / `loads`.

    ``Serializer(type="json")`` gives the serializer registered under that type
    (``"compressed/pickle"`` too); as a pydantic field, a serializer validates from
    an instance or a dict such as ``{"type": "json", "jsonlib": "orjson"}``. A
    subclass with a string ``type`` default is registered under it, so
    ``result_serializer="<type>"`` finds it::

        class IntSerializer(Serializer):
            type: str = "int-bytes"

            def dumps(self, value): return value.to_bytes(8, "little")
            def loads(self, data): return int.from_bytes(data, "little")

    `name` is what stored records call the serializer (by default its ``type``).
    Any other object with ``name``, ``dumps`` and ``loads`` serves as a serializer too.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Serializer and "type" in kwargs:
            return super().__new__(_registered_class(kwargs["type"]))
        return super().__new__(cls)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        kind = field.default if field is not None else None
        if not isinstance(kind, str):
            return
        _TYPES[kind] = cls
        if kind in _BY_NAME:  # a name flowbus's defaults already serve ("json", "pickle")
            return
        try:
            _BY_NAME[kind] = cls()  # type: ignore[call-arg]  # the subclass gives type a default
        except (TypeError, ValidationError):  # needs arguments: usable as an instance, not by name
            pass

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, value: Any, handler: Any) -> Any:
        if cls is Serializer and isinstance(value, dict) and not isinstance(value, Serializer):
            return _registered_class(value.get("type")).model_validate(value)
        return handler(value)

    @property
    def name(self) -> str:
        return self.type

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError(f"{type(self).__name__} does not implement dumps")

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement loads")


def _registered_class(kind: Any) -> type[Serializer]:
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValidationError.from_exception_data(
            "Serializer",
            [
                {
                    "type": PydanticCustomError(
                        "unknown_serializer_type",
                        "Unknown serializer type '{kind}'; known: {known}",
                        {"kind": kind, "known": ", ".join(sorted(_TYPES))},
                    ),
                    "loc": ("type",),
                    "input": kind,
                }
            ],
        )
    return cls  # type: ignore[no-any-return]


class JSONSerializer(Serializer):
    """JSON with a few tagged types; the default.

    Prefect's options, used as Prefect uses them: ``jsonlib`` (the module whose
    ``dumps`` / ``loads`` are called, e.g. ``"orjson"``; ``loads`` is given text),
    ``object_encoder`` / ``object_decoder`` (import paths of the ``default`` /
    ``object_hook`` functions, None for none; by default
    `prefect_json_object_encoder` / `prefect_json_object_decoder`, so objects are
    written in Prefect's shapes, ``{"__class__": "uuid.UUID", "data": ...}``), and
    ``dumps_kwargs`` / ``loads_kwargs``, passed through. The default decoder also
    reads the tagged types the ``"json"`` serializer by name writes. A record written
    with other options is read back with them only through the same serializer
    object: stored records name the serializer ``"json"``.
    """

    type: Literal["json"] = "json"
    jsonlib: str = "json"
    object_encoder: str | None = "flowbus.serializers.prefect_json_object_encoder"
    object_decoder: str | None = "flowbus.serializers.prefect_json_object_decoder"
    dumps_kwargs: dict[str, Any] = Field(default_factory=dict)
    loads_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dumps_kwargs")
    @classmethod
    def _no_default(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "default" in value:
            raise ValueError("pass the hook as object_encoder=, not as dumps_kwargs['default']")
        return value

    @field_validator("loads_kwargs")
    @classmethod
    def _no_object_hook(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "object_hook" in value:
            raise ValueError("pass the hook as object_decoder=, not as loads_kwargs['object_hook']")
        return value

    def _lib(self) -> Any:
        import importlib

        return importlib.import_module(self.jsonlib)

    def dumps(self, value: Any) -> bytes:
        options = dict(self.dumps_kwargs)
        if self.object_encoder:
            options["default"] = _import_path(self.object_encoder, "object_encoder")
        try:
            out = self._lib().dumps(value, **options)
        except ValueError as exc:  # e.g. circular references
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be serialized as JSON: {exc}"
            ) from exc
        return out.encode() if isinstance(out, str) else out

    def loads(self, data: bytes) -> Any:
        options = dict(self.loads_kwargs)
        if self.object_decoder:
            options["object_hook"] = _import_path(self.object_decoder, "object_decoder")
        return self._lib().loads(data.decode(), **options)


class PickleSerializer(Serializer):
    """cloudpickle: any Python object, readable only by Python (and only trusted data).

    ``picklelib``: the import path of another module with ``dumps`` / ``loads``
    (e.g. ``"pickle"``). As Prefect's, the pickle is written base64-encoded; `loads`
    also reads the plain pickle the ``"cloudpickle"`` serializer by name writes.
    Stored records name it ``"cloudpickle"``.
    """

    name: ClassVar[str] = "cloudpickle"
    type: Literal["pickle"] = "pickle"
    picklelib: str = "cloudpickle"
    picklelib_version: str | None = None

    @field_validator("picklelib", mode="before")
    @classmethod
    def _importable(cls, picklelib: Any) -> str:
        if not isinstance(picklelib, str):
            raise ValueError(f"picklelib must be an import path (a str), got {type(picklelib).__name__}")
        if picklelib != "cloudpickle":  # cloudpickle itself is imported on first use
            import importlib

            module = importlib.import_module(picklelib)
            for method in ("dumps", "loads"):
                if not callable(getattr(module, method, None)):
                    raise ValueError(f"Pickle library at {picklelib!r} does not have a {method!r} method.")
        return picklelib

    def _lib(self) -> Any:
        import importlib

        return importlib.import_module(self.picklelib)  # lazy: keeps `import flowbus` fast

    def dumps(self, value: Any) -> bytes:
        try:
            return base64.encodebytes(self._lib().dumps(value))
        except Exception as exc:
            raise SerializationError(
                f"A result of type {type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        return self._lib().loads(unwrap_pickle(data))


class CompressedSerializer(Serializer):
    """Another serializer's output compressed with `compressionlib` (a module with
    ``compress`` / ``decompress``: ``lzma``, the default, ``zlib``, ``bz2`` ...), base64-encoded.

    Example: ``@task(result_serializer=CompressedSerializer(serializer="json", compressionlib="zlib"))``.
    """

    type: Literal["compressed"] = "compressed"
    serializer: Any
    compressionlib: str = "lzma"

    @field_validator("serializer", mode="before")
    @classmethod
    def _inner(cls, value: Any) -> Any:
        return resolve_serializer(value)

    @field_validator("compressionlib")
    @classmethod
    def _compression(cls, value: str) -> str:
        import importlib

        try:
            module = importlib.import_module(value)
        except ImportError:
            module = None
        if module is None or not all(callable(getattr(module, f, None)) for f in ("compress", "decompress")):
            raise ValueError(f"compressionlib {value!r} must be a module with compress and decompress")
        return value

    @property
    def name(self) -> str:
        suffix = "" if self.compressionlib == "lzma" else f"+{self.compressionlib}"
        return f"compressed/{self.serializer.name}{suffix}"

    def _lib(self) -> Any:
        import importlib

        return importlib.import_module(self.compressionlib)

    def dumps(self, value: Any) -> bytes:
        return base64.encodebytes(self._lib().compress(self.serializer.dumps(value)))

    def loads(self, data: bytes) -> Any:
        return self.serializer.loads(self._lib().decompress(base64.decodebytes(data)))


class CompressedPickleSerializer(CompressedSerializer):
    """`CompressedSerializer` of cloudpickle (``"compressed/pickle"``)."""

    type: Literal["compressed/pickle"] = "compressed/pickle"  # type: ignore[assignment]
    serializer: Any = Field(default_factory=PickleSerializer)


class CompressedJSONSerializer(CompressedSerializer):
    """`CompressedSerializer` of JSON (``"compressed/json"``)."""

    type: Literal["compressed/json"] = "compressed/json"  # type: ignore[assignment]
    serializer: Any = Field(default_factory=JSONSerializer)


__all__ = [
    "CompressedJSONSerializer",
    "CompressedPickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
]
