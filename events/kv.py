"""KV buckets with compare-and-set, and object stores, over JetStream.

Records that several processes change (flow runs, leases, concurrency slots) are
only ever written with :meth:`KV.update`, a read-modify-write loop that retries
when another writer got there first, so no update is ever lost.

Reads come in two kinds. :meth:`KV.get` is a JetStream *direct get*, which any
replica of the bucket may answer: on a cluster (``FLOWBUS_STREAM_REPLICAS=3``) a
follower answers with what it has applied, which can lag the leader, so a key just
written may read as absent or as its previous value (measured: a few reads in a
hundred, right after the write). That is fine where a stale read only costs a lost
compare-and-set and another try. A decision that would *drop* work on what it read
(a job whose run seems to be gone or finished) reads with ``latest=True``: the
stream leader answers, which has every acknowledged write.

>>> async def mark_late(kv: KV, run_id: str) -> None:
...     await kv.update_json(run_id, lambda run: {**run, "state": "Late"})
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
    ObjectNotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE, ObjectStore

from events.errors import AlreadyExists, BusUnavailable, NotFound, UpdateConflict

_STOP_TIMEOUT = 2.0

# A raw KV write (for pipelined or windowed publishes): JetStream stores it only if
# the key's last revision is this header's value ("0": the key holds nothing).
EXPECTED_REVISION_HEADER = "Nats-Expected-Last-Subject-Sequence"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a write of ``key`` in KV ``bucket`` is published on."""
    return f"$KV.{bucket}.{key}"


@dataclass(frozen=True, slots=True)
class Entry:
    """A KV value with the revision a compare-and-set must name."""

    key: str
    value: bytes
    revision: int

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class Change:
    """One change seen by :meth:`KV.watch`; ``value`` is None for a delete."""

    key: str
    value: bytes | None
    revision: int


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


class KV:
    """One KV bucket."""

    def __init__(self, kv: KeyValue, name: str) -> None:
        self._kv = kv
        self.name = name
        # The same bucket read through the stream leader (no direct get).
        self._leader = KeyValue(name=kv._name, stream=kv._stream, pre=kv._pre, js=kv._js,
                                direct=False)

    async def get(self, key: str, *, latest: bool = False) -> Entry | None:
        """The entry at ``key``, or None when absent or deleted.

        ``latest``: ask the stream leader, so every acknowledged write is seen (see
        the module docstring); otherwise any replica answers, possibly a stale one.
        """
        try:
            entry = await (self._leader if latest else self._kv).get(key)
        except (KeyNotFoundError, KeyDeletedError, NotFoundError):
            return None
        except (NatsTimeout, NoRespondersError, ServiceUnavailableError):
            raise BusUnavailable(f"KV {self.name}: no answer reading {key!r}") from None
        if entry.value is None or entry.revision is None:
            return None
        return Entry(key, entry.value, entry.revision)

    async def get_json(self, key: str) -> Any | None:
        entry = await self.get(key)
        return None if entry is None else entry.json()

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        """Store ``value`` only if ``key`` holds nothing; :class:`AlreadyExists` otherwise.

        ``ttl``: the entry expires after that many seconds (a bucket with message TTLs).
        """
        try:
            return int(await self._kv.create(key, value, msg_ttl=ttl))
        except KeyWrongLastSequenceError:
            raise AlreadyExists(f"KV {self.name}: key {key!r} already exists") from None

    async def put(self, key: str, value: bytes, *, ttl: int | None = None) -> int:
        """Store ``value`` unconditionally (for values a single writer owns).

        ``ttl``: the entry expires after that many whole seconds unless written again
        (a bucket with message TTLs; nats-py's own ``put`` takes none).
        """
        if ttl is None:
            return int(await self._kv.put(key, value))
        ack = await self._kv._js.publish(f"{self._kv._pre}{key}", value, msg_ttl=ttl)
        return int(ack.seq)

    async def put_json(self, key: str, obj: Any) -> int:
        return await self.put(key, _dumps(obj))

    async def cas(self, key: str, value: bytes, revision: int) -> int:
        """Store ``value`` if ``key`` is still at ``revision``; :class:`UpdateConflict` if not."""
        try:
            return int(await self._kv.update(key, value, last=revision))
        except KeyWrongLastSequenceError:
            raise UpdateConflict(
                f"KV {self.name}: key {key!r} changed since revision {revision}"
            ) from None

    async def update(
        self, key: str, fn: Callable[[bytes | None], bytes | None], *, attempts: int = 50
    ) -> Entry | None:
        """Read-modify-write ``key`` with compare-and-set, retrying lost races.

        ``fn`` gets the current value (None when absent) and returns the new one, or
        None to leave the key as it is (the current entry is then returned). It may
        be called several times, so it must not have side effects.
        """
        for attempt in range(attempts):
            if attempt:
                # Jittered backoff: racing writers spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
            current = await self.get(key)
            new = fn(None if current is None else current.value)
            if new is None:
                return current
            try:
                if current is None:
                    revision = await self.create(key, new)
                else:
                    revision = await self.cas(key, new, current.revision)
            except (AlreadyExists, UpdateConflict):
                continue
            return Entry(key, new, revision)
        raise UpdateConflict(f"KV {self.name}: gave up updating {key!r} after {attempts} races")

    async def update_json(
        self, key: str, fn: Callable[[Any | None], Any | None], *, attempts: int = 50
    ) -> Any | None:
        """:meth:`update` for JSON values; returns the stored object."""

        def step(raw: bytes | None) -> bytes | None:
            new = fn(None if raw is None else json.loads(raw))
            return None if new is None else _dumps(new)

        entry = await self.update(key, step, attempts=attempts)
        return None if entry is None else entry.json()

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Delete ``key`` (only if still at ``revision``, when given)."""
        try:
            await self._kv.delete(key, last=revision)
        except KeyWrongLastSequenceError:
            raise UpdateConflict(f"KV {self.name}: key {key!r} changed since {revision}") from None

    async def purge(self, key: str) -> None:
        await self._kv.purge(key)

    async def keys(self) -> list[str]:
        """Every live key (empty list for an empty bucket).

        Read from the subjects the bucket's stream holds, then each key's latest
        value: nats-py's own ``keys()`` ends on a watcher's pending count, which
        can report the end before the keys arrive, so a key just written could be
        missing from the list. The values are read from the stream leader, for the
        same reason (a lagging replica answers "absent" for a key just written).
        """
        prefix = f"$KV.{self.name}."
        info = await self._kv._js.stream_info(f"KV_{self.name}", subjects_filter=f"{prefix}>")
        subjects = info.state.subjects or {}
        candidates = sorted(subject.removeprefix(prefix) for subject in subjects)
        live = await asyncio.gather(*(self.get(key, latest=True) for key in candidates))
        return [key for key, entry in zip(candidates, live, strict=True) if entry is not None]

    async def last_revision(self) -> int:
        """The revision of the bucket's latest write (0 for a bucket never written)."""
        info = await self._kv._js.stream_info(f"KV_{self.name}")
        return int(info.state.last_seq or 0)

    async def watch(
        self, keys: str = ">", *, include_history: bool = False,
        on_current: Callable[[], None] | None = None,
    ) -> AsyncIterator[Change]:
        """Changes to ``keys`` as they happen (after the current values, unless history).

        ``on_current`` is called once the values present when the watch began have all
        been yielded (at once for an empty bucket).
        """
        watcher = await self._kv.watch(keys, include_history=include_history)
        try:
            async for entry in watcher:
                if entry is None:  # the end of the initial values
                    if on_current is not None:
                        on_current()
                        on_current = None
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                yield Change(entry.key, None if deleted else entry.value, int(entry.revision or 0))
        finally:
            # nats-py's stop can wait forever when the task is being cancelled (its
            # flush path swallows CancelledError); a shutdown must never hang on it.
            try:
                await asyncio.wait_for(watcher.stop(), _STOP_TIMEOUT)  # type: ignore[no-untyped-call]
            except (TimeoutError, NatsError):
                pass


# (subject, body, headers) messages in, stored before it returns (Bus.publish_raw_many).
Publisher = Callable[[Sequence[tuple[str, bytes, dict[str, str] | None]]], Awaitable[Any]]


def _chunk_subject(bucket: str, nuid: str) -> str:
    """The subject of an object's chunks in JetStream's object-store layout."""
    return f"$O.{bucket}.C.{nuid}"


class Objects:
    """One object store (results, code bundles)."""

    def __init__(self, store: ObjectStore, name: str, publish: Publisher | None = None) -> None:
        self._store = store
        self.name = name
        self._publish = publish

    async def put(self, name: str, data: bytes) -> None:
        await self._store.put(name, data)

    async def put_once(self, name: str, data: bytes) -> None:
        """Store an object under a name that is only ever written with this ``put_once``
        (a run attempt's result): one pipelined round trip instead of nats-py's three.

        The chunk's subject is derived from the name and published with a subject
        rollup, so writing the name again replaces the chunk without reading the old
        object's description first; the description is published in the same window,
        as nats-py's ``put`` writes it (its ``get`` reads such an object). Objects
        larger than one chunk, or a store bound without a publisher, take ``put``
        (which reads the old description and purges its chunks); a one-chunk write
        after such a larger one of the same name leaves the larger one's chunks.
        """
        if self._publish is None or not data or len(data) > OBJ_DEFAULT_CHUNK_SIZE:
            await self.put(name, data)
            return
        bucket = self._store._name
        nuid = hashlib.blake2b(name.encode(), digest_size=16).hexdigest()[:22]
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        info = {"name": name, "bucket": bucket, "nuid": nuid, "size": len(data),
                "chunks": 1, "digest": f"SHA-256={digest}",
                "mtime": datetime.now(UTC).isoformat(),
                "options": {"max_chunk_size": OBJ_DEFAULT_CHUNK_SIZE}}
        meta = base64.urlsafe_b64encode(name.encode()).decode()
        rollup = {"Nats-Rollup": "sub"}
        await self._publish([(_chunk_subject(bucket, nuid), data, rollup),
                             (f"$O.{bucket}.M.{meta}", json.dumps(info).encode(), rollup)])

    async def get(self, name: str) -> bytes:
        """The object's bytes; :class:`NotFound` naming it when absent."""
        try:
            info = await self._store.get_info(name)
            if info.chunks == 1 and info.nuid and not info.is_link():
                # One chunk: read it by subject, without the ephemeral consumer (one
                # per read, the server's to create and expire) nats-py's get makes.
                chunk = await self._store._js.get_last_msg(
                    self._store._stream, _chunk_subject(self._store._name, info.nuid))
                data = bytes(chunk.data or b"")
                digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
                if digest.rstrip("=") == (info.digest or "").rstrip("="):
                    return data
            result = await self._store.get(name)
        except (ObjectNotFoundError, NotFoundError):
            raise NotFound(f"object {name!r} not found in {self.name}") from None
        return bytes(result.data or b"")

    async def exists(self, name: str) -> bool:
        try:
            info = await self._store.get_info(name)
        except (ObjectNotFoundError, NotFoundError):
            return False
        return not info.deleted

    async def delete(self, name: str) -> None:
        try:
            await self._store.delete(name)
        except (ObjectNotFoundError, NotFoundError):
            raise NotFound(f"object {name!r} not found in {self.name}") from None

    async def names(self) -> list[str]:
        try:
            infos = await self._store.list()
        except NotFoundError:
            return []
        return sorted(i.name for i in infos if not i.deleted and i.name)
