"""Helpers the gateway tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from events.bus import Bus
from events.cloudevent import CloudEvent

ADMIN_KEY = "admin-key-for-the-tests-0123456789"


async def stored_events(bus: Bus, durable: str = "check") -> list[CloudEvent]:
    """Every event in the test's events stream, in order."""
    consumer = await bus.consumer(durable)
    out: list[CloudEvent] = []
    while True:
        batch = await consumer.fetch(500, max_wait=0.2)
        if not batch:
            break
        out.extend(d.event for d in batch)
        for d in batch:
            await d.ack()
    await consumer.close()
    await bus.delete_consumer(bus.layout.events_stream, durable)
    return out


def problem(body: dict[str, Any]) -> str:
    """The detail of a problem body (asserting it is one)."""
    assert {"type", "title", "status", "detail"} <= set(body), body
    return str(body["detail"])
