"""Where persisted results and cache records live.

`ResultStorage` is the small interface the engine needs. `LocalResultStore` keeps one file
per key under a directory (by default ``$FLOWBUS_LOCAL_STORAGE_PATH``, else
``$FLOWBUS_HOME/results``, ``~/.flowbus`` when unset); writes are atomic (a temporary file, then `os.replace`) so a reader in
another process sees either the old record or the new one, never half of one.
With a server (a run on a runner, or ``FLOWBUS_NATS_URL`` set), the same interface is
backed by the ``flowbus-results`` object store (`flowbus._state.ObjectStoreResults`)
and the ``flowbus-cache`` KV (`flowbus._state.KvCache`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flowbus.exceptions import ConfigurationError
from flowbus.serializers import SerializerLike, resolve_serializer

if TYPE_CHECKING:
    from flowbus._result_records import ResultRecord, ResultRecordMetadata


@runtime_checkable
class ResultStorage(Protocol):
    """Bytes by key. Implementations must make `write` atomic for concurrent readers."""

    def read(self, key: str) -> bytes | None: ...

    def write(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


def flowbus_home() -> Path:
    """The local data directory: ``$FLOWBUS_HOME``, else ``~/.flowbus``."""
    home = os.environ.get("FLOWBUS_HOME")
    return Path(home) if home else Path.home() / ".flowbus"


def server_connection() -> Any | None:
    """The process's server connection (`flowbus._remote.Remote`), or None for local state.

    Cheap when there is no server: nats-py is imported only when one is configured.
    """
    if "flowbus._remote" not in sys.modules and not os.environ.get("FLOWBUS_NATS_URL"):
        return None
    from flowbus import _remote

    return _remote.connection()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.name[-40:])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LocalResultStore:
    """A directory of files, one per key.

    Example::

        store = LocalResultStore("/tmp/results")
        store.write("answer", b"42")
        assert store.read("answer") == b"42"
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        # Any key works: unusual characters are percent-encoded into the file name;
        # "/" makes sub-directories, but a key may never leave the store's directory.
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise ConfigurationError(
                f"Result key {key!r} is not usable as a storage key: it must be non-empty "
                "and contain no empty, '.' or '..' path segments."
            )
        return self.root.joinpath(*(urllib.parse.quote(part, safe="._-=+") for part in parts))

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        return f"LocalResultStore({str(self.root)!r})"


# Stores installed by a transport (e.g. the NATS object store and KV); None: local files.
_result_store: ResultStorage | None = None
_cache_store: ResultStorage | None = None


def set_default_stores(results: ResultStorage | None = None, cache: ResultStorage | None = None) -> None:
    """Install the stores used when a task or flow names none (None: local directories).

    Example (a server-backed process)::

        set_default_stores(results=ObjectStoreResults(remote), cache=KvCache(remote))
    """
    global _result_store, _cache_store
    _result_store, _cache_store = results, cache


_server_stores: tuple[Any, ResultStorage, ResultStorage] | None = None


def _server_store(which: int) -> ResultStorage | None:
    global _server_stores
    remote = server_connection()
    if remote is None:
        return None
    stores = _server_stores
    if stores is None or stores[0] is not remote:
        from flowbus._state import KvCache, ObjectStoreResults

        stores = _server_stores = (remote, ObjectStoreResults(remote), KvCache(remote))
    return stores[which]


# The default stores made so far, by (default storage block, local directory): Prefect's
# cache of its default storage has this name; clearing it makes the next lookup build
# them anew (so a block saved again under the same name is loaded again).
_default_storages: dict[tuple[str, str], ResultStorage] = {}


def _local_default() -> ResultStorage:
    from flowbus.settings import FLOWBUS_LOCAL_STORAGE_PATH

    root = Path(FLOWBUS_LOCAL_STORAGE_PATH.value())
    store = _default_storages.get(("", str(root)))
    if store is None:
        store = _default_storages["", str(root)] = LocalResultStore(root)
    return store


def _block_default() -> ResultStorage | None:
    """The block named by ``FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK``, or None when unset."""
    from flowbus.settings import FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK, FLOWBUS_LOCAL_STORAGE_PATH

    slug = FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK.value()
    if not slug:
        return None
    cache_key = (slug, f"{flowbus_home()}|{FLOWBUS_LOCAL_STORAGE_PATH.value()}")
    store = _default_storages.get(cache_key)
    if store is None:
        block_type, sep, name = slug.partition("/")
        if sep and name and "/" not in name and _storage_block_slug(slug) is None:
            from flowbus.blocks.core import BlockNotFound

            raise BlockNotFound(f"Unable to find block document named {name} for block type {block_type} "
                                f"(named by {FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK.env}): no storage block "
                                "type has that slug")
        if _storage_block_slug(slug) is None:
            raise ConfigurationError(
                f"{FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK.env}={slug!r} must name a saved storage block "
                "as '<block type>/<name>', e.g. 'local-file-system/results'")
        store = _default_storages[cache_key] = load_storage_block(slug)
    return store


def _storage_block_slug(value: str) -> str | None:
    """The block type of ``"<block type>/<name>"`` when it is a storage block type, else None."""
    block_type, sep, name = value.partition("/")
    if not sep or not name or "/" in name:
        return None
    import flowbus.filesystems  # noqa: F401  (registers the file system block types)
    from flowbus.blocks.core import _registry

    cls = _registry.get(block_type)
    if cls is None or not (callable(getattr(cls, "read", None)) and callable(getattr(cls, "write", None))):
        return None
    return block_type


def load_storage_block(slug: str) -> ResultStorage:
    """The storage block saved as ``"<block type>/<name>"`` (e.g. ``local-file-system/results``)."""
    from flowbus.blocks.core import Block

    return Block.load(slug, _sync=True)  # type: ignore[no-any-return]


def resolve_result_store(value: ResultStorage | str | os.PathLike[str] | None) -> ResultStorage:
    """The store for a `result_storage` option: a store, a saved storage block's slug
    (``"local-file-system/results"``), a directory, or None (the default)."""
    if value is None:
        return _block_default() or _result_store or _server_store(1) or _local_default()
    if isinstance(value, str) and _storage_block_slug(value) is not None:
        return load_storage_block(value)
    if isinstance(value, str | os.PathLike):
        return LocalResultStore(value)
    return value


def get_default_result_storage() -> ResultStorage:
    """Where results go when a task or flow names no `result_storage`: the block named
    by ``FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK``, else the installed store, the server's
    object store, else the ``FLOWBUS_LOCAL_STORAGE_PATH`` directory."""
    return resolve_result_store(None)


from flowbus._result_store import ResultStore, should_persist_result  # noqa: E402  (uses the helpers above)


def get_result_store() -> ResultStore:
    """The `ResultStore` of the current run: the running task's (or else flow's)
    ``result_storage`` and ``result_serializer``; outside a run, the defaults."""
    from flowbus.context import FlowRunContext, TaskRunContext

    task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
    if task_ctx is not None and getattr(task_ctx, "task", None) is not None:
        return task_ctx.result_store  # type: ignore[no-any-return]
    return flow_ctx.result_store if flow_ctx is not None else ResultStore()


async def aget_default_result_storage() -> ResultStorage:
    """`get_default_result_storage` for async code."""
    return get_default_result_storage()


def local_cache_dir() -> Path:
    """Where cache records (and transaction records) live with no server: ``cache``
    under ``FLOWBUS_LOCAL_STORAGE_PATH`` when that is set (Prefect keeps them with its
    local results, so setting it isolates both), else ``$FLOWBUS_HOME/cache``."""
    from flowbus.settings import FLOWBUS_LOCAL_STORAGE_PATH

    if os.environ.get(FLOWBUS_LOCAL_STORAGE_PATH.env):
        return Path(FLOWBUS_LOCAL_STORAGE_PATH.value()) / "cache"
    return flowbus_home() / "cache"


def default_cache_store() -> ResultStorage:
    """Where cache records go: the installed store, the server's KV, else `local_cache_dir`."""
    return _cache_store or _server_store(2) or LocalResultStore(local_cache_dir())


# A cache record is one JSON header line (serializer, expiry) followed by the payload,
# so a hit needs a single read.


def encode_cache_record(serializer: SerializerLike, payload: bytes, expires: _dt.datetime | None) -> bytes:
    header = {"serializer": serializer.name, "expires": expires.isoformat() if expires else None}
    return json.dumps(header).encode() + b"\n" + payload


def decode_cache_record(record: bytes) -> tuple[SerializerLike, bytes] | None:
    """The serializer and payload of a record, or None when it has expired or is unreadable."""
    header_line, sep, payload = record.partition(b"\n")
    if not sep:
        return None
    try:
        header = json.loads(header_line)
        expires = header["expires"]
        serializer = resolve_serializer(header["serializer"])
    except (ValueError, KeyError, ConfigurationError):
        return None
    if expires is not None and _dt.datetime.fromisoformat(expires) <= _dt.datetime.now(_dt.UTC):
        return None
    return serializer, payload


def __getattr__(name: str) -> Any:
    # The record classes need pydantic; they load when first asked for.
    if name in ("ResultRecord", "ResultRecordMetadata"):
        from flowbus import _result_records

        return getattr(_result_records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LocalResultStore",
    "ResultRecord",
    "ResultRecordMetadata",
    "ResultStorage",
    "ResultStore",
    "aget_default_result_storage",
    "flowbus_home",
    "get_default_result_storage",
    "get_result_store",
    "load_storage_block",
    "local_cache_dir",
    "resolve_result_store",
    "set_default_stores",
    "should_persist_result",
]
