"""Task cache records and cache locks in ``flowbus-cache``.

A cache key computed by a task's policy becomes the KV key ``c.<key>`` when it is
made of characters a KV key allows, else ``c.h-<sha256 of the key>``; its value is
the record the SDK writes (:mod:`flowbus.results`: a header with the serializer,
the expiry and, for a large result, the object holding it; then the payload).

A lock for serializable isolation is ``lock.<same token>`` holding
``{"holder", "expires"}``: taken with a KV ``create`` (or a compare-and-set over
an expired lock), released with a delete at the revision taken, so a holder that
died frees it when its lease expires.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from events.errors import AlreadyExists, UpdateConflict
from events.kv import KV

_PLAIN = re.compile(r"[-_=A-Za-z0-9]{1,200}")


def _token(cache_key: str) -> str:
    if _PLAIN.fullmatch(cache_key):
        return cache_key
    return "h-" + hashlib.sha256(cache_key.encode()).hexdigest()


def record_key(cache_key: str) -> str:
    """The KV key of the record for ``cache_key``."""
    return f"c.{_token(cache_key)}"


def lock_key(cache_key: str) -> str:
    return f"lock.{_token(cache_key)}"


@dataclass(frozen=True, slots=True)
class CacheLock:
    key: str
    revision: int


async def try_lock(kv: KV, cache_key: str, holder: str, ttl: float) -> CacheLock | None:
    """Take the lock of ``cache_key`` for ``ttl`` seconds, or None while another holds it."""
    key = lock_key(cache_key)
    now = datetime.now(UTC)
    body = json.dumps({"holder": holder, "expires": (now + timedelta(seconds=ttl)).isoformat()})
    entry = await kv.get(key)
    try:
        if entry is None:
            return CacheLock(key, await kv.create(key, body.encode()))
        if datetime.fromisoformat(entry.json()["expires"]) > now:
            return None
        return CacheLock(key, await kv.cas(key, body.encode(), entry.revision))
    except (AlreadyExists, UpdateConflict):
        return None


async def lock_holder(kv: KV, cache_key: str) -> str | None:
    """Who holds the unexpired lock of ``cache_key`` (None: nobody)."""
    entry = await kv.get(lock_key(cache_key))
    if entry is None:
        return None
    try:
        body = entry.json()
        if datetime.fromisoformat(body["expires"]) <= datetime.now(UTC):
            return None
        return str(body["holder"])
    except (ValueError, KeyError, TypeError):
        return None


async def unlock(kv: KV, lock: CacheLock) -> None:
    """Release a lock (a no-op when it expired and passed to another holder)."""
    try:
        await kv.delete(lock.key, revision=lock.revision)
    except UpdateConflict:
        return


async def renew_lock(kv: KV, lock: CacheLock, holder: str, ttl: float) -> CacheLock | None:
    """Extend a held lock's lease; None when it was lost."""
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    body = json.dumps({"holder": holder, "expires": expires.isoformat()}).encode()
    try:
        return CacheLock(lock.key, await kv.cas(lock.key, body, lock.revision))
    except UpdateConflict:
        return None
