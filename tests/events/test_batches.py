"""``events.batches.publish_batches`` against a real server: every message of a batch is
stored, in order, and acked; a batch with a message no stream takes answers an error
of its own, even when a later message of it is stored, and the other batches are
unaffected."""

from __future__ import annotations

from events.batches import publish_batches
from events.bus import Ack, Bus
from events.cloudevent import CloudEvent
from events.errors import FlowbusError


async def test_each_batch_is_stored_in_order(bus: Bus) -> None:
    events = [bus.event_message(CloudEvent.create("test.batch.item", source="/t", data={"n": i}))
              for i in range(20)]
    logs = [(bus.layout.logs_subject(f"run-{i}"), f'[{{"n": {i}}}]'.encode(), None) for i in range(5)]
    outcomes = await publish_batches(bus, [events, [], logs])
    assert len(outcomes) == 2 and all(isinstance(o, Ack) for o in outcomes)
    assert [o.stream for o in outcomes if isinstance(o, Ack)] == [
        bus.layout.events_stream, bus.layout.logs_stream]
    consumer = await bus.consumer("batched", filter_subjects=[f"{bus.layout.namespace}.events.>"])
    seen: list[int] = []
    for _ in range(40):
        seen += [d.event.data["n"] for d in await consumer.fetch(30, max_wait=0.25)]
        if len(seen) >= 20:
            break
    assert seen == list(range(20))
    [info] = [s for s in await bus.streams() if s.config.name == bus.layout.logs_stream]
    assert info.state.messages == 5


async def test_a_batch_no_stream_takes_fails_alone(bus: Bus) -> None:
    good = [bus.event_message(CloudEvent.create("test.batch.good", source="/t", data={"n": 1}))]
    nowhere = [(f"{bus.layout.namespace}-nowhere.x", b"{}", None)]
    outcomes = await publish_batches(bus, [nowhere, good])
    assert isinstance(outcomes[0], FlowbusError) and isinstance(outcomes[1], Ack)
    assert await publish_batches(bus, []) == []


async def test_a_refused_message_is_seen_though_a_later_one_of_its_batch_is_stored(bus: Bus) -> None:
    stored = bus.event_message(CloudEvent.create("test.batch.after", source="/t", data={"n": 2}))
    nowhere = (f"{bus.layout.namespace}-nowhere.y", b"{}", None)
    [outcome] = await publish_batches(bus, [[nowhere, stored]])
    assert isinstance(outcome, FlowbusError)
