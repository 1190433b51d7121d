"""Reading what the events stream holds: it ends at the last stored event, however
slowly it is read, and at once when nothing matches."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from events.bus import Bus
from events.cloudevent import CloudEvent


def ev(type_: str, i: int) -> CloudEvent:
    return CloudEvent.create(type_, source="/t", id=f"{type_}-{i}", data={"i": i})


async def collect(bus: Bus, pattern: str, since: datetime, pause: float = 0.0) -> list[str]:
    found = []
    async for event in bus.stored(pattern, since=since):
        found.append(event.id)
        if pause:
            await asyncio.sleep(pause)
    return found


async def test_nothing_stored_ends_at_once(bus: Bus) -> None:
    await bus.publish(ev("other.kind", 0))
    started = time.monotonic()
    assert await asyncio.wait_for(collect(bus, "wanted.*", datetime.now(UTC) - timedelta(hours=1)), 20) == []
    assert await asyncio.wait_for(collect(bus, "*", datetime.now(UTC) + timedelta(hours=1)), 20) == []
    # It did not wait for a pause in delivery (the old reader waited 0.3 s per read,
    # and a stall bound is 30 s): generous for a loaded machine.
    assert time.monotonic() - started < 15


async def test_every_stored_match_in_order_however_slowly_read(bus: Bus) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    await bus.publish_many([ev("order.placed" if i % 3 else "order.noise", i) for i in range(300)])
    wanted = [f"order.placed-{i}" for i in range(300) if i % 3]
    assert await collect(bus, "order.placed", since) == wanted
    # The last stored event does not match: the read still ends, after the last match.
    await bus.publish_many([ev("order.placed", 300)] + [ev("order.noise", i) for i in range(301, 310)])
    assert (await collect(bus, "order.placed", since))[-1] == "order.placed-300"
    # Pausing between reads, longer than any delivery gap, does not end a read early.
    sparse = datetime.now(UTC)
    await bus.publish_many([ev("slow.read", i) for i in range(5)])
    assert await asyncio.wait_for(collect(bus, "slow.read", sparse, pause=0.5), 60) == [
        f"slow.read-{i}" for i in range(5)]


async def test_a_read_ends_though_events_are_stored_while_reading(bus: Bus) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    await bus.publish_many([ev("a.b", i) for i in range(5)])
    found = []
    async for event in bus.stored("a.b", since=since):
        found.append(event.id)
        if len(found) == 2:
            await bus.publish(ev("a.b", 5))
    # The new one comes too unless the stored ones were already on their way.
    assert found[:5] == [f"a.b-{i}" for i in range(5)] and found[5:] in ([], ["a.b-5"])
