"""What a test's bus has stored, read to the last event.

One ``fetch`` returns as soon as the first message arrives (the runner's hot path wants
that), so a test that wants *every* stored event reads them here instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from events.bus import Bus
from events.cloudevent import CloudEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def stored_events(bus: Bus, pattern: str = "*") -> list[CloudEvent]:
    """Every event stored in the test's events stream matching ``pattern``, in order."""
    return [event async for event in bus.stored(pattern, since=EPOCH)]


async def stored_types(bus: Bus, pattern: str = "*") -> list[str]:
    """The types of :func:`stored_events`."""
    return [event.type for event in await stored_events(bus, pattern)]
