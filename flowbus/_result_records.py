"""`ResultRecord`: a value with the metadata needed to store and read it back.

Prefect's result records, by its names (`flowbus.results.ResultRecord` and
`ResultRecordMetadata`): the metadata says where the value is stored (``storage_key``),
until when it is valid (``expiration``) and how it is serialised (``serializer``, one of
flowbus's serializers, written by name). flowbus's engine keeps a run's result in
the state itself (or a stored reference to it), so it does not produce records;
they are for code that builds, stores and reads records itself. A completed state
holding a record gives the record's value as its result.

Example::

    record = ResultRecord(result={"rows": 3}, metadata=ResultRecordMetadata(storage_key="k"))
    data = record.serialize()
    assert ResultRecord.deserialize(data).result == {"rows": 3}
"""

from __future__ import annotations

import base64
import datetime as _dt
import uuid
from typing import Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
)

from flowbus.exceptions import SerializationError
from flowbus.serializers import PickleSerializer, SerializerLike, resolve_serializer

R = TypeVar("R")


def _version() -> str:
    from flowbus import __version__

    return __version__


class ResultRecordMetadata(BaseModel):
    """Where a record's value is stored, until when it is valid, and its serializer."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    storage_key: str | None = Field(default=None, description="the key the value is stored under")
    expiration: _dt.datetime | None = Field(default=None, description="when the record stops being valid")
    serializer: Any = Field(default_factory=PickleSerializer, description="a serializer, or its name")
    prefect_version: str = Field(default_factory=_version, description="the flowbus version that wrote it")
    storage_block_id: uuid.UUID | None = Field(default=None, description="the saved storage block the value is in")

    @field_validator("serializer", mode="before")
    @classmethod
    def _serializer(cls, value: Any) -> SerializerLike:
        if isinstance(value, dict):  # Prefect's shape: {"type": "json", ...}
            value = value.get("type")
        return resolve_serializer(value)

    @field_serializer("serializer")
    def _serializer_name(self, value: SerializerLike) -> str:
        return value.name

    def dump_bytes(self) -> bytes:
        """The metadata as JSON bytes."""
        return self.model_dump_json().encode()

    @classmethod
    def load_bytes(cls, data: bytes) -> ResultRecordMetadata:
        """Metadata from `dump_bytes` output."""
        return cls.model_validate_json(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultRecordMetadata):
            return False
        mine, theirs = self.model_dump(), other.model_dump()
        return mine == theirs


class ResultRecord(BaseModel, Generic[R]):
    """A value (``result``) with its `ResultRecordMetadata`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    metadata: ResultRecordMetadata
    result: R
    _persisted: bool = PrivateAttr(default=False)

    @property
    def is_persisted(self) -> bool:
        """Whether `mark_persisted` was called (the owner wrote it to storage)."""
        return self._persisted

    def mark_persisted(self) -> None:
        self._persisted = True

    @property
    def expiration(self) -> _dt.datetime | None:
        return self.metadata.expiration

    @property
    def serializer(self) -> SerializerLike:
        return self.metadata.serializer  # type: ignore[no-any-return]

    def serialize_result(self) -> bytes:
        """The value, serialised with the record's serializer."""
        try:
            return self.serializer.dumps(self.result)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"Failed to serialize object of type {type(self.result).__name__!r} with serializer "
                f"{self.serializer.name!r}. Try another result_serializer (e.g. 'cloudpickle')."
            ) from exc

    def serialize_metadata(self) -> bytes:
        return self.metadata.dump_bytes()

    def serialize(self) -> bytes:
        """The whole record as JSON bytes: the metadata and the serialised value (base64)."""
        payload = base64.b64encode(self.serialize_result()).decode()
        return b'{"metadata":' + self.serialize_metadata() + b',"result":"' + payload.encode() + b'"}'

    @classmethod
    def deserialize(cls, data: bytes, backup_serializer: SerializerLike | None = None) -> ResultRecord[Any]:
        """A record from `serialize` output. Bytes that are not a record are read with
        `backup_serializer` when given (raises otherwise)."""
        try:
            raw = _Stored.model_validate_json(data)
        except ValidationError:
            if backup_serializer is None:
                raise
            return cls(metadata=ResultRecordMetadata(serializer=backup_serializer), result=backup_serializer.loads(data))
        value = raw.metadata.serializer.loads(base64.b64decode(raw.result))
        return cls(metadata=raw.metadata, result=value)

    @classmethod
    def deserialize_from_result_and_metadata(cls, result: bytes, metadata: bytes) -> ResultRecord[Any]:
        """A record from a value serialised alone and its `serialize_metadata` bytes."""
        meta = ResultRecordMetadata.load_bytes(metadata)
        return cls(metadata=meta, result=meta.serializer.loads(result))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultRecord):
            return False
        return bool(self.metadata == other.metadata and self.result == other.result)


class _Stored(BaseModel):
    metadata: ResultRecordMetadata
    result: str


__all__ = ["ResultRecord", "ResultRecordMetadata"]
