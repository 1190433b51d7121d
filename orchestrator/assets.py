"""The asset catalog: asset events folded into ``flowbus-assets``.

The leading orchestrator follows the asset events (``<ns>.events.flowbus.asset.>``)
through a durable consumer of its own, apart from the trigger consumer, so keeping
the catalog never delays a run. Each event updates its asset's record by
compare-and-set (`events.assets.record_event`) and is acked once the record is
stored; a redelivered or late event changes nothing (the latest materialisation is
the one with the latest time). An event that is not a valid asset event, or that
arrived on a subject other than its own, is dropped with a warning.

>>> indexer = AssetIndexer(bus, kv, durable="orchestrator-assets")  # doctest: +SKIP
>>> await indexer.run(halt)                                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from events.assets import ASSET_EVENT_PREFIX, record_event
from events.bus import Bus, Delivery
from events.errors import FlowbusError, InvalidEvent
from events.kv import KV
from events.records import utcnow
from events.subjects import on_own_subject
from orchestrator.types import Clock

log = logging.getLogger("flowbus.orchestrator.assets")

_BATCH = 64
_MAX_DELIVERIES = 5


class AssetIndexer:
    """Keeps ``flowbus-assets`` current from the asset events."""

    def __init__(self, bus: Bus, kv: KV, *, durable: str, clock: Clock = utcnow,
                 fetch_wait_seconds: float = 1.0) -> None:
        self.bus = bus
        self.kv = kv
        self.durable = durable
        self.clock = clock
        self.fetch_wait_seconds = fetch_wait_seconds
        self.indexed = 0
        self.dropped = 0

    async def run(self, halt: asyncio.Event) -> None:
        """Fold asset events into the catalog until ``halt`` is set."""
        consumer = await self.bus.consumer(
            self.durable, filter_subjects=[f"{self.bus.layout.events_prefix}.{ASSET_EVENT_PREFIX}>"],
            ack_wait=30.0, max_ack_pending=_BATCH * 4)
        try:
            while not halt.is_set():
                try:
                    deliveries = await consumer.fetch(_BATCH, max_wait=self.fetch_wait_seconds)
                except FlowbusError as exc:
                    log.warning("fetching asset events failed: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(halt.wait(), 1.0)
                    continue
                # Records fold events in any order (the latest time wins), so a batch
                # is handled at once; events of one asset meet in compare-and-set.
                await asyncio.gather(*(self._handle(d) for d in deliveries))
        finally:
            await consumer.close()

    async def _handle(self, delivery: Delivery) -> None:
        """Fold one event into its record, then ack it (drop it when it is not valid)."""
        try:
            event = delivery.event
            if not on_own_subject(self.bus.layout.namespace, delivery.subject, event.type):
                raise ValueError(f"a {event.type[:100]!r} event on "
                                 f"{delivery.subject[:200]!r}, not its own subject")
            await record_event(self.kv, event, self.clock())
        except (InvalidEvent, ValueError) as exc:
            log.warning("dropping an asset event: %s", exc)
            self.dropped += 1
            await delivery.term()
            return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delivery.nak(), 1.0)
            raise
        except Exception as exc:  # NATS hiccup: the event comes back
            if delivery.num_delivered >= _MAX_DELIVERIES:
                log.error("giving up on an asset event after %d attempts: %r",
                          delivery.num_delivered, exc)
                await delivery.term()
            else:
                log.warning("indexing an asset event failed, retrying: %r", exc)
                await delivery.nak(delay=1.0)
            return
        await delivery.ack()
        self.indexed += 1
