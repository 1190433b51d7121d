"""Asset records made by their real producers: a flow with ``@materialize`` tasks
publishing through the SDK's NATS sink, and the orchestrator's `AssetIndexer`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from events.bus import Bus
from events.settings import NatsSettings
from flowbus import _sink, flow, task
from flowbus._nats_sink import nats_event_sink
from flowbus.assets import add_asset_metadata, materialize
from orchestrator.assets import AssetIndexer

#: Asset events one successful `produce` publishes: clean references postgres and
#: materialises; report references clean and materialises.
PRODUCED_EVENTS = 4


async def produce(nats_settings: NatsSettings, *, fail: bool = False) -> None:
    """Run a flow that materialises two assets from a third, publishing to NATS."""
    sink = nats_event_sink(nats_settings)
    assert sink is not None
    previous = _sink.set_event_sink(sink)

    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @materialize("s3://lake/clean.parquet", asset_deps=["postgres://shop/orders"], by="spark")
    def clean(rows: list[int]) -> list[int]:
        add_asset_metadata("s3://lake/clean.parquet", {"rows": len(rows)})
        if fail:
            raise RuntimeError("spark died")
        return rows

    report = materialize(
        "s3://lake/report.csv",
        "s3://lake/report.csv",  # named twice: materialised once
    )(lambda rows: sum(rows))

    @flow
    def pipeline() -> None:
        rows = clean(extract())
        report(rows)

    try:
        await asyncio.to_thread(pipeline, return_state=True)  # type: ignore[call-arg]
    finally:
        _sink.set_event_sink(previous)
        await asyncio.to_thread(sink.close)


async def index(bus: Bus, events: int, durable: str = "assets-test") -> AssetIndexer:
    """Run the orchestrator's indexer until it has handled ``events`` more events."""
    indexer = AssetIndexer(bus, await bus.kv(bus.layout.assets), durable=durable,
                           fetch_wait_seconds=0.2)
    halt = asyncio.Event()
    running = asyncio.create_task(indexer.run(halt))
    try:
        await settled(lambda: indexer.indexed + indexer.dropped >= events)
    finally:
        halt.set()
        await asyncio.wait_for(running, 10)
    return indexer


async def settled(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Poll ``condition`` until it holds (generous bound: the machine is loaded)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a counter, not an event to wait on
            await asyncio.sleep(0.05)
