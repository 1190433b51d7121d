"""Blocks: typed, named configuration saved once and loaded by any flow (Prefect's ``Block``).

A block class is a pydantic model. ``save(name)`` stores its fields; ``load(name)``
gives them back. Fields typed ``SecretStr`` / ``SecretBytes`` (and every field
listed in ``_secret_fields``) are sealed before they are stored: with a server in
the ``flowbus-blocks`` KV, encrypted with ``FLOWBUS_SECRETS_KEY``; with no server
under ``$FLOWBUS_HOME/blocks``, encrypted with that key or, when unset, with a key
file made once at ``$FLOWBUS_HOME/secrets.key`` (mode 0600)::

    from pydantic import SecretStr
    from flowbus.blocks.core import Block

    class Warehouse(Block):
        host: str
        password: SecretStr

    Warehouse(host="db", password=SecretStr("s3cret")).save("prod", overwrite=True)
    Warehouse.load("prod").password.get_secret_value()   # "s3cret"
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import re
import uuid
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretBytes, SecretStr

from flowbus import _state
from flowbus._dual import _DualClassMethod, dual, dual_classmethod
from flowbus.exceptions import FlowbusError
from flowbus.results import flowbus_home, server_connection

B = TypeVar("B", bound="Block")
_NAME = re.compile(r"^[a-z0-9-]{1,100}$")
_registry: dict[str, type[Block]] = {}


class BlockNotFound(FlowbusError, ValueError):
    """No block is saved under that name."""


class BlockAlreadyExists(FlowbusError, ValueError):
    """A block is already saved under that name (pass ``overwrite=True``)."""


def _slug(name: str) -> str:
    # "DateTime" -> "date-time", "JSON" -> "json", "S3Bucket" -> "s3-bucket", "HTTPAuth" -> "http-auth"
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def _secret_box() -> Any:
    from events.secretbox import SecretBox

    box = SecretBox.from_environment()
    if box is not None:
        return box
    if server_connection() is not None:
        from events.secretbox import ENV_KEY, SecretsKeyError

        raise SecretsKeyError(
            f"blocks with secret fields need {ENV_KEY} set in every process that saves or "
            "loads them (the same key everywhere); make one with `flowbus block generate-key`")
    from events.sealed import dev_box

    return SecretBox(dev_box(flowbus_home()))


class _IgnoredDescriptor:
    """Base of descriptors a block class defines that pydantic must leave alone."""


class Block(BaseModel):
    """Base class of saved configuration; subclass it with pydantic fields."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              ignored_types=(_DualClassMethod, _IgnoredDescriptor))

    _block_type_slug: ClassVar[str | None] = None
    _secret_fields: ClassVar[tuple[str, ...]] = ()
    # Where this instance was saved or loaded from (Prefect's names); None while unsaved.
    _block_document_id: uuid.UUID | None = PrivateAttr(default=None)
    _block_document_name: str | None = PrivateAttr(default=None)
    _is_anonymous: bool | None = PrivateAttr(default=None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registry[cls.get_block_type_slug()] = cls

    @classmethod
    def get_block_type_slug(cls) -> str:
        """The block type's slug: ``_block_type_slug``, else the class name in kebab case."""
        return cls.__dict__.get("_block_type_slug") or _slug(cls.__name__)

    @classmethod
    def secret_field_names(cls) -> list[str]:
        names = list(cls._secret_fields)
        for name, field in cls.model_fields.items():
            if field.annotation in (SecretStr, SecretBytes) and name not in names:
                names.append(name)
        return names

    # --- save / load ---------------------------------------------------------------

    async def asave(self, name: str, overwrite: bool = False) -> uuid.UUID:
        """`save` for async code (the write runs in a worker thread)."""
        return await asyncio.to_thread(self._save_sync, name, False, overwrite)

    @dual(asave)
    def save(self, name: str, overwrite: bool = False) -> uuid.UUID:
        """Store this block as ``name``; an existing one needs ``overwrite=True``.

        Returns the block document's id (kept when overwritten), also set as
        ``_block_document_id``. Awaitable in async code, like Prefect's.
        """
        return self._save_sync(name, False, overwrite)

    async def _asave(self, name: str | None = None, is_anonymous: bool = False,
                     overwrite: bool = False) -> uuid.UUID:
        return await asyncio.to_thread(self._save_sync, name, is_anonymous, overwrite)

    @dual(_asave)
    def _save(self, name: str | None = None, is_anonymous: bool = False, overwrite: bool = False) -> uuid.UUID:
        """Prefect's ``_save``: with ``is_anonymous=True`` and no name, the block is
        stored under a generated ``anonymous-<uuid>`` name."""
        return self._save_sync(name, is_anonymous, overwrite)

    def _save_sync(self, name: str | None, is_anonymous: bool, overwrite: bool) -> uuid.UUID:
        from events.blocks import BlockDocument, block_key

        if name is None:
            if not is_anonymous:
                raise ValueError("You're attempting to save a block document without a name. "
                                 "Please either call `save` with a `name` or pass "
                                 "`is_anonymous=True` to save an anonymous block.")
            name = f"anonymous-{uuid.uuid4()}"
        _check_name(name)
        cls = type(self)
        slug = cls.get_block_type_slug()
        bucket = _state.bucket("blocks")
        key = block_key(slug, name)
        existing = bucket.get(key)
        if existing is not None and not overwrite:
            raise BlockAlreadyExists(
                f"a {slug} block named {name!r} already exists: you are attempting to save values "
                "with a name that is already in use for this block type; pass overwrite=True to "
                "replace it")
        secret = cls.secret_field_names()
        data: dict[str, Any] = {}
        box = _secret_box() if secret else None
        for field in cls.model_fields:
            value = getattr(self, field)
            if field in secret and box is not None:
                data[field] = box.seal(json.dumps(_reveal(value)))
            else:
                data[field] = self.model_dump(mode="json", include={field})[field]
        now = _dt.datetime.now(_dt.UTC)
        previous = BlockDocument.model_validate_json(existing) if existing is not None else None
        document = BlockDocument(
            id=previous.id if previous else str(uuid.uuid4()), block_type=slug, name=name,
            data=data, secret_fields=secret, created=previous.created if previous else now,
            updated=now,
        )
        if existing is None and not overwrite:
            if not bucket.create(key, document.model_dump_json().encode()):
                raise BlockAlreadyExists(f"a {slug} block named {name!r} already exists")
        else:
            bucket.put(key, document.model_dump_json().encode())
        self._mark_saved(document.id, name, is_anonymous)
        return uuid.UUID(document.id)

    def _mark_saved(self, document_id: str, name: str, is_anonymous: bool) -> None:
        self._block_document_id = uuid.UUID(document_id)
        self._block_document_name = name
        self._is_anonymous = is_anonymous

    @classmethod
    async def aload(cls: type[B], name: str) -> B:
        """`load` for async code."""
        return await asyncio.to_thread(cls._load_sync, name)

    @dual_classmethod("aload")
    def load(cls: type[B], name: str) -> B:
        """The block saved as ``name`` (on ``Block`` itself: ``"<type slug>/<name>"``).
        Awaitable in async code, like Prefect's."""
        return cls._load_sync(name)

    @classmethod
    def _load_sync(cls: type[B], name: str) -> B:
        """The block saved as ``name`` (on ``Block`` itself: ``"<type slug>/<name>"``)."""
        from events.blocks import BlockDocument, block_key

        block_cls: type[Block] = cls
        if cls is Block:
            slug, sep, name = name.partition("/")
            if not sep or slug not in _registry:
                raise BlockNotFound(
                    f"Block.load needs '<block type>/<name>' with a known block type, got "
                    f"{slug + sep + name!r}")
            block_cls = _registry[slug]
        _check_name(name)
        slug = block_cls.get_block_type_slug()
        raw = _state.bucket("blocks").get(block_key(slug, name))
        if raw is None:
            raise BlockNotFound(f"Unable to find block document named {name} for block type {slug}")
        document = BlockDocument.model_validate_json(raw)
        values = dict(document.data)
        if document.secret_fields:
            box = _secret_box()
            for field in document.secret_fields:
                if field in values:
                    values[field] = json.loads(box.open(values[field]))
        block = block_cls.model_validate(values)
        block._mark_saved(document.id, name, name.startswith("anonymous-"))
        return block  # type: ignore[return-value]

    @classmethod
    def delete(cls, name: str) -> bool:
        """Delete the block saved as ``name``; True if it existed."""
        from events.blocks import block_key

        _check_name(name)
        return _state.bucket("blocks").delete(block_key(cls.get_block_type_slug(), name))


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode("latin-1")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"Block name {name!r} is invalid: use 1-100 lowercase letters, digits "
                         "and dashes")


__all__ = ["Block", "BlockAlreadyExists", "BlockNotFound"]
