"""From received messages to stored events: map, publish, then acknowledge upstream.

At-least-once: a batch is acknowledged to the broker only after JetStream stored
its events; if storing fails the batch is handed back (nak / requeue) and the
error raised, so the runner reconnects. A message whose mapping fails is kept as a
dead letter with the reason and acknowledged, so it does not loop.
"""

from __future__ import annotations

import logging
import time

from events import subjects
from events.bus import MSG_ID_HEADER, Bus, msg_id
from events.cloudevent import STRUCTURED_CONTENT_TYPE
from events.errors import EventTooLarge, InvalidEvent
from events.source_messages import MappingFailed, to_event
from events.source_store import SourceStore
from events.sources import SourceSpec
from gateway.sources.activity import Activity
from gateway.sources.metrics import SourceMetrics
from gateway.sources.settings import SourcesSettings
from gateway.sources.types import Incoming

log = logging.getLogger("flowbus.gateway.sources")


class Pipeline:
    """Delivers batches of one source's messages into the events stream."""

    def __init__(self, bus: Bus, store: SourceStore, spec: SourceSpec, metrics: SourceMetrics,
                 settings: SourcesSettings, activity: Activity | None = None) -> None:
        self.bus = bus
        self.activity = activity
        self.store = store
        self.spec = spec
        self.metrics = metrics
        self.settings = settings
        self._in = metrics.messages_in.labels(spec.name)
        self._out = metrics.events_out.labels(spec.name)
        self._dup = metrics.duplicates.labels(spec.name)
        self._failed = metrics.mapping_failures.labels(spec.name)
        self._latency = metrics.latency.labels(spec.kind)
        self._buffered = metrics.buffered.labels(spec.name)

    async def deliver(self, batch: list[Incoming]) -> None:
        """Store the batch's events, then ack; on failure nak what is not acked and raise."""
        done: set[int] = set()
        self._buffered.set(len(batch))
        try:
            await self._deliver(batch, done)
            self._buffered.set(0)
        except BaseException:
            for i, incoming in enumerate(batch):
                if i not in done:
                    await _quietly_nak(incoming)
            raise

    async def _deliver(self, batch: list[Incoming], done: set[int]) -> None:
        self._in.inc(len(batch))
        if self.activity is not None:
            self.activity.received(len(batch))
        namespace = self.bus.layout.namespace
        messages: list[tuple[str, bytes, dict[str, str] | None]] = []
        carried: list[int] = []
        for i, incoming in enumerate(batch):
            try:
                event = await to_event(self.spec, incoming.message)
                subjects.check_outside_type(event.type)
                body = self.bus.encode(event)
            except MappingFailed as exc:
                await self._dead_letter(incoming, exc.reason)
                done.add(i)
                continue
            except (InvalidEvent, EventTooLarge) as exc:
                await self._dead_letter(incoming, f"the event cannot be stored: {exc}")
                done.add(i)
                continue
            messages.append((subjects.event_subject(namespace, event.type), body,
                             {MSG_ID_HEADER: msg_id(event),
                              "Content-Type": STRUCTURED_CONTENT_TYPE}))
            carried.append(i)
        if not messages:
            return
        acks = await self.bus.publish_raw_many(messages)
        stored = time.monotonic()
        for i, ack in zip(carried, acks, strict=True):
            incoming = batch[i]
            await incoming.ack()
            done.add(i)
            if ack.duplicate:
                self._dup.inc()
            else:
                self._out.inc()
                if self.activity is not None:
                    self.activity.stored(1)
            self._latency.observe(stored - incoming.received)

    async def _dead_letter(self, incoming: Incoming, reason: str) -> None:
        self._failed.inc()
        if self.activity is not None:
            self.activity.failed_mapping()
        kept = await self.store.add_dead_letter(self.spec.name, incoming.message, reason,
                                                limit=self.settings.dead_letter_max)
        if not kept:
            self.metrics.dead_letters_dropped.labels(self.spec.name).inc()
            log.warning("source %s: dead-letter list full (%d); dropped a failed message: %s",
                        self.spec.name, self.settings.dead_letter_max, reason)
        await incoming.ack()


async def _quietly_nak(incoming: Incoming) -> None:
    try:
        await incoming.nak()
    except Exception as exc:  # the broker redelivers unacked messages anyway
        log.debug("nak failed: %s", exc)
