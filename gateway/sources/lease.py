"""One gateway at a time for a source that cannot share its load: a lease in ``<ns>-leases``.

The lease is a KV entry ``source.<name>`` holding the owner, created and renewed with
compare-and-set; the bucket's time-to-live (``FLOWBUS_LEASE_TTL_SECONDS``) frees it
when its owner dies. Renewal happens every third of the TTL.
"""

from __future__ import annotations

import asyncio
import json

from events.errors import AlreadyExists, UpdateConflict
from events.kv import KV


class LeaseLost(Exception):
    """Another gateway holds the lease now."""


class Lease:
    """The lease on one source, held by ``owner``."""

    def __init__(self, kv: KV, source: str, owner: str, ttl: float) -> None:
        self.kv = kv
        self.key = f"source.{source}"
        self.owner = owner
        self.ttl = ttl
        self._revision: int | None = None

    @property
    def interval(self) -> float:
        return max(self.ttl / 3, 0.05)

    def _value(self) -> bytes:
        return json.dumps({"owner": self.owner}).encode()

    async def try_acquire(self) -> bool:
        """Take the lease if it is free or already ours; True if we hold it now."""
        entry = await self.kv.get(self.key)
        try:
            if entry is None:
                self._revision = await self.kv.create(self.key, self._value())
                return True
            if json.loads(entry.value).get("owner") == self.owner:
                self._revision = await self.kv.cas(self.key, self._value(), entry.revision)
                return True
        except (AlreadyExists, UpdateConflict):
            return False
        return False

    async def acquire(self) -> None:
        """Wait until the lease is ours."""
        while True:
            if await self.try_acquire():
                return
            await asyncio.sleep(self.interval)

    async def keep(self) -> None:
        """Renew until cancelled; :class:`LeaseLost` if someone else took it."""
        while True:
            await asyncio.sleep(self.interval)
            assert self._revision is not None
            try:
                self._revision = await self.kv.cas(self.key, self._value(), self._revision)
            except UpdateConflict:
                raise LeaseLost(f"lease {self.key} was taken by another gateway") from None

    async def release(self) -> None:
        if self._revision is None:
            return
        try:
            await self.kv.delete(self.key, self._revision)
        except UpdateConflict:
            pass
        self._revision = None
