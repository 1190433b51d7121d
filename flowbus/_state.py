"""Run-time state by context: the server's buckets, or files under ``FLOWBUS_HOME``.

Variables, artifacts, blocks and task caches each live in one :class:`StateBucket`
chosen here: a KV bucket of the server when the process has one
(:func:`flowbus._remote.connection`), else a directory under ``FLOWBUS_HOME``.
Both offer the same small interface, so the public API above them is one code path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from flowbus.results import LocalResultStore, flowbus_home, server_connection, write_atomic

if TYPE_CHECKING:
    from flowbus import _remote

Kind = Literal["variables", "artifacts", "blocks", "cache"]


class StateBucket(Protocol):
    """Bytes by key, with create-if-absent."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def create(self, key: str, value: bytes) -> bool:
        """Store only if absent; False when the key already holds a value."""
        ...

    def delete(self, key: str) -> bool:
        """Delete; True if it existed."""
        ...

    def keys(self) -> list[str]: ...


class LocalBucket:
    """One file per key in a directory (atomic writes; create is exclusive)."""

    def __init__(self, root: Path, suffix: str = "") -> None:
        self.root = root
        self._suffix = suffix
        self._files = LocalResultStore(root)

    def _path(self, key: str) -> Path:
        path = self._files._path(key)
        return path.with_name(path.name + self._suffix) if self._suffix else path

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, value: bytes) -> None:
        write_atomic(self._path(key), value)

    def create(self, key: str, value: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Link a complete temporary file into place: exclusive, and never half-written.
            tmp = path.with_name(f".new-{uuid.uuid4().hex}-{path.name[-40:]}")
            tmp.write_bytes(value)
            try:
                os.link(tmp, path)
            finally:
                tmp.unlink()
        except FileExistsError:
            return False
        return True

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        from urllib.parse import unquote

        out = []
        for path in self.root.iterdir():
            name = path.name
            if name.startswith(".") or not path.is_file() or not name.endswith(self._suffix):
                continue
            out.append(unquote(name[: len(name) - len(self._suffix)] if self._suffix else name))
        return sorted(out)


class RemoteBucket:
    """A KV bucket of the server."""

    def __init__(self, remote: _remote.Remote, bucket: str) -> None:
        self._remote = remote
        self._kv = remote.kv(bucket)

    def get(self, key: str) -> bytes | None:
        entry = self._remote.call(self._kv.get(key))
        return None if entry is None else entry.value

    def put(self, key: str, value: bytes) -> None:
        self._remote.call(self._kv.put(key, value))

    def create(self, key: str, value: bytes) -> bool:
        from events.errors import AlreadyExists

        try:
            self._remote.call(self._kv.create(key, value))
        except AlreadyExists:
            return False
        return True

    def delete(self, key: str) -> bool:
        if self.get(key) is None:
            return False
        self._remote.call(self._kv.delete(key))
        return True

    def keys(self) -> list[str]:
        return self._remote.call(self._kv.keys())


_LOCAL_SUFFIX: dict[Kind, str] = {"variables": ".json", "artifacts": ".json", "blocks": ".json",
                                  "cache": ""}


def bucket(kind: Kind) -> StateBucket:
    """Where ``kind`` lives for this process: the server's bucket, or ``FLOWBUS_HOME``."""
    remote = server_connection()
    if remote is not None:
        return RemoteBucket(remote, getattr(remote.layout, kind))
    return LocalBucket(flowbus_home() / kind, _LOCAL_SUFFIX[kind])


class ObjectStoreResults:
    """Persisted results in the server's ``flowbus-results`` object store (under ``tasks/``)."""

    PREFIX = "tasks/"

    def __init__(self, remote: _remote.Remote) -> None:
        self._remote = remote
        self._store = remote.objects(remote.layout.results)

    def read(self, key: str) -> bytes | None:
        from events.errors import NotFound

        try:
            return self._remote.call(self._store.get(self.PREFIX + key))
        except NotFound:
            return None

    def write(self, key: str, data: bytes) -> None:
        self._remote.call(self._store.put(self.PREFIX + key, data))

    def delete(self, key: str) -> None:
        from events.errors import NotFound

        with contextlib.suppress(NotFound):
            self._remote.call(self._store.delete(self.PREFIX + key))

    def __repr__(self) -> str:
        return f"ObjectStoreResults({self._remote.layout.results!r})"


# A cache record larger than this goes to the object store; the KV holds a pointer.
INLINE_RECORD_BYTES = 256 * 1024
_POINTER = b"\x00flowbus-ref:"


class KvCache:
    """Cache records in the server's ``flowbus-cache`` KV (large ones in the object store)."""

    def __init__(self, remote: _remote.Remote) -> None:
        from events import cache

        self._remote = remote
        self._keys = cache
        self._kv = remote.kv(remote.layout.cache)
        self._objects = ObjectStoreResults(remote)

    def read(self, key: str) -> bytes | None:
        entry = self._remote.call(self._kv.get(self._keys.record_key(key)))
        if entry is None:
            return None
        if entry.value.startswith(_POINTER):
            return self._objects.read(entry.value.removeprefix(_POINTER).decode())
        return entry.value

    def write(self, key: str, data: bytes) -> None:
        kv_key = self._keys.record_key(key)
        if len(data) > INLINE_RECORD_BYTES:
            name = f"cache/{kv_key}"
            self._objects.write(name, data)
            data = _POINTER + name.encode()
        self._remote.call(self._kv.put(kv_key, data))

    def write_soon(self, key: str, data: bytes) -> concurrent.futures.Future[int] | None:
        """Start writing a record and return at once (None: written already, it was large)."""
        if len(data) > INLINE_RECORD_BYTES:
            self.write(key, data)
            return None
        return self._remote.submit(self._kv.put(self._keys.record_key(key), data))

    def delete(self, key: str) -> None:
        kv_key = self._keys.record_key(key)
        if self._remote.call(self._kv.get(kv_key)) is not None:
            self._remote.call(self._kv.delete(kv_key))

    def __repr__(self) -> str:
        return f"KvCache({self._remote.layout.cache!r})"
