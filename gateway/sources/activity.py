"""One running source's activity record (:mod:`events.source_activity`), kept by its runner.

The pipeline and the connector note what happens; :meth:`Activity.keep` writes the
record every few seconds when something changed, and once more when the source stops.
A failed write is only logged: the record is for people watching.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from events.kv import KV
from events.source_activity import WRITE_INTERVAL_SECONDS, SourceActivity, put_activity

log = logging.getLogger("flowbus.gateway.sources")


class Activity:
    """Counters, lag and last error of one source on this gateway."""

    def __init__(self, kv: KV, name: str, gateway: str | None,
                 interval: float = WRITE_INTERVAL_SECONDS) -> None:
        self.kv = kv
        self.name = name
        self.interval = interval
        self.record = SourceActivity(gateway=gateway, since=datetime.now(UTC),
                                     updated=datetime.now(UTC))
        self._dirty = True

    def received(self, count: int) -> None:
        self.record.messages_in += count
        self.record.last_message = datetime.now(UTC)
        self._dirty = True

    def stored(self, count: int) -> None:
        self.record.events_out += count
        self._dirty = True

    def failed_mapping(self) -> None:
        self.record.mapping_failures += 1
        self._dirty = True

    def lag(self, pending: int) -> None:
        if pending != self.record.lag:
            self.record.lag = max(0, int(pending))
            self._dirty = True

    def error(self, reason: str) -> None:
        self.record.last_error = reason[:2000]
        self.record.last_error_at = datetime.now(UTC)
        self._dirty = True

    async def write(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.record.updated = datetime.now(UTC)
        try:
            await put_activity(self.kv, self.name, self.record)
        except Exception as exc:  # nats-py raises its own errors; the record is advisory
            self._dirty = True
            log.debug("source %s: could not write its activity: %s", self.name, exc)

    async def keep(self, stopping: asyncio.Event) -> None:
        """Write every interval while something changed, until ``stopping``; then once more."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), self.interval)
            except TimeoutError:
                pass
            await self.write()
