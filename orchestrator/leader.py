"""Active/standby: one orchestrator leads, through a lease in ``flowbus-leases``.

The lease is the key ``orchestrator`` in a bucket whose entries expire after
``FLOWBUS_LEASE_TTL_SECONDS``. The leader creates it (KV ``create``: one winner) and
renews it by compare-and-set on the revision it holds, well before it expires; the
revision of the winning ``create`` is logged as its token (only logged: no write is
fenced with it; record writes are compare-and-set). A renewal that fails means
another instance took over: the leader stops consuming at once. A standby retries
``create`` a few times per TTL, so it takes over within about one TTL of the
leader's death; a leader that stops cleanly deletes the lease for an instant handover.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid

from events.errors import AlreadyExists, BusUnavailable, UpdateConflict
from events.kv import KV

log = logging.getLogger("flowbus.orchestrator.leader")

LEASE_KEY = "orchestrator"


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaderLease:
    """This instance's view of the leader lease."""

    def __init__(self, kv: KV, identity: str | None = None) -> None:
        self._kv = kv
        self.identity = identity or default_identity()
        self.revision: int | None = None
        self.token: int | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.identity, "token": self.token}).encode()

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def try_acquire(self) -> bool:
        """Become leader if nobody holds the lease; True when this instance leads."""
        if self.held:
            return await self.renew()
        try:
            self.revision = await self._kv.create(LEASE_KEY, json.dumps({"holder": self.identity}).encode())
        except AlreadyExists:
            return False
        self.token = self.revision
        try:
            self.revision = await self._kv.cas(LEASE_KEY, self._body(), self.revision)
        except UpdateConflict:
            self.revision = self.token = None
            return False
        log.info("leading (fencing token %s)", self.token)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer leader) if it was lost."""
        if self.revision is None:
            return False
        try:
            self.revision = await self._kv.cas(LEASE_KEY, self._body(), self.revision)
        except (UpdateConflict, BusUnavailable):
            log.warning("lost the leader lease")
            self.revision = self.token = None
            return False
        return True

    async def release(self) -> None:
        """Give the lease up (clean stop), so a standby takes over at once."""
        revision, self.revision, self.token = self.revision, None, None
        if revision is None:
            return
        try:
            await self._kv.delete(LEASE_KEY, revision=revision)
        except Exception as exc:  # NATS gone or lease already taken: it expires by itself
            log.warning("could not release the leader lease (%s); it expires by itself", exc)

    async def holder(self) -> str | None:
        value = await self._kv.get_json(LEASE_KEY)
        return None if value is None else str(value.get("holder"))
