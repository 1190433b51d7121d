"""The task worker's event sink (`flowbus._loop_sink.LoopSink`) against a real server:
what a body thread hands over is stored in order, a flush waits for it, the bound
holds a producer back, and a bad event costs only itself."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from events.bus import Bus
from flowbus import _sink
from flowbus._loop_sink import LoopSink, loop_sink


def _event(i: int, kind: str = "flowbus.task-run.Running") -> dict[str, Any]:
    return {"specversion": "1.0", "type": kind, "source": "flowbus/sdk", "id": f"ev-{i}",
            "subject": f"flowbus.task-run.r{i}", "datacontenttype": "application/json",
            "data": {"id": f"r{i}", "n": i}}


async def _stored(bus: Bus, name: str, want: int) -> list[int]:
    consumer = await bus.consumer(name, filter_subjects=[f"{bus.layout.namespace}.events.>"])
    seen: list[Any] = []
    for _ in range(40):
        seen += await consumer.fetch(want + 5, max_wait=0.25)
        if len(seen) >= want:
            break
    return [d.event.data["n"] for d in seen]


async def test_a_flush_from_a_body_thread_returns_once_its_items_are_stored(bus: Bus) -> None:
    sink = LoopSink(bus).start()
    done = threading.Event()

    def body() -> None:
        for i in range(30):
            sink.emit_event(_event(i))
        sink.flush()
        done.set()

    await asyncio.to_thread(body)
    assert done.is_set() and sink.published_count == 30 and sink.error_count == 0
    # Stored before the flush returned: the stream holds them all at once.
    [events] = [s for s in await bus.streams() if s.config.name == bus.layout.events_stream]
    assert events.state.messages == 30
    await sink.aclose()
    assert await _stored(bus, "flushed", 30) == list(range(30))


async def test_a_full_sink_holds_the_producer_back_and_loses_nothing(bus: Bus) -> None:
    sink = LoopSink(bus, maxsize=2, batch_size=1).start()

    def body() -> None:
        for i in range(25):
            sink.emit_event(_event(i))

    await asyncio.to_thread(body)
    await sink.aclose()
    assert sink.backpressure_count > 0
    assert await _stored(bus, "bounded", 25) == list(range(25))


async def test_a_bad_event_is_dropped_alone_and_a_closed_sink_takes_nothing(bus: Bus) -> None:
    sink = LoopSink(bus).start()
    sink.emit_event(_event(0))
    sink.emit_event(_event(1, kind="not a type!"))
    sink.emit_event(_event(2))
    await sink.aflush()
    await sink.aclose()
    assert sink.error_count == 1 and sink.published_count == 2
    sink.emit_event(_event(3))  # after close: dropped and counted, never raised into a body
    assert sink.error_count == 2
    assert await _stored(bus, "partial", 2) == [0, 2]


async def test_the_worker_sink_is_installed_only_while_serving(bus: Bus) -> None:
    previous = _sink.set_event_sink(None)
    _sink._configured = False
    try:
        async with loop_sink(bus) as sink:
            assert sink is not None and _sink.get_event_sink() is sink
            _sink.emit_event("flowbus.artifact.created", "flowbus.artifact.a", {"n": 7})
        assert sink.published_count == 1  # published before the block ended
        assert not _sink._configured and not _sink.enabled
        _sink.set_event_sink(_sink.NullSink())  # a sink chosen before serving stays
        async with loop_sink(bus) as none:
            assert none is None
    finally:
        _sink.set_event_sink(previous)
