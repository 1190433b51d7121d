"""Benchmark assets: what ``@materialize`` costs a task run, and how fast the catalog follows.

Starts its own embedded nats-server with JetStream on a free port, so it needs
nothing running. It prints, with the machine's load average:

- the per-call time of a plain task, of the same plain task in a flow that has seen
  assets (its inputs are searched for upstream results), and of a ``@materialize``
  task (which builds and hands over its events), each called inline in a flow,
  events going to a sink that drops them (median of several runs, microseconds);
- for N materialisations published through the SDK's NATS sink and folded into
  ``flowbus-assets`` by the orchestrator's ``AssetIndexer``: the delay from the
  event's time to its record being stored (p50/p99, ms) and records stored per second.

Usage: python bench/assets.py [--calls N] [--assets N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.assets import list_assets
from events.bus import Bus
from events.embedded import EmbeddedNats
from events.settings import NatsSettings
from flowbus import _sink, flow, task
from flowbus._nats_sink import nats_event_sink
from flowbus.assets import materialize
from orchestrator.assets import AssetIndexer


class _Drop:
    """A sink that keeps nothing but is enabled, so the engine builds every event."""

    def emit_event(self, event: dict[str, Any]) -> None:
        pass

    def emit_log(self, record: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@task
def plain(x: int) -> int:
    return x


@materialize("s3://bench/seed")
def seed() -> list[int]:
    return [1]


@materialize("s3://bench/table", asset_deps=["postgres://bench/source"])
def made(x: int) -> int:
    return x


def _per_call_us(calls: int) -> dict[str, float]:
    @flow
    def plain_only() -> None:
        for i in range(calls):
            plain(i)

    @flow
    def plain_after_assets() -> None:
        rows = seed()
        for _ in range(calls):
            plain(rows)

    @flow
    def materialising() -> None:
        for i in range(calls):
            made(i)

    previous = _sink.set_event_sink(_Drop())
    out: dict[str, float] = {}
    try:
        for name, fn in (("plain task", plain_only), ("plain task, flow with assets", plain_after_assets),
                         ("@materialize task", materialising)):
            fn()  # warm up
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                fn()
                runs.append((time.perf_counter() - start) / calls * 1e6)
            out[name] = statistics.median(runs)
    finally:
        _sink.set_event_sink(previous)
    return out


async def _catalog(url: str, count: int) -> tuple[float, float, float]:
    settings = NatsSettings(nats_url=[url], namespace="benchassets")
    async with await Bus.connect(settings) as bus:
        kv = await bus.kv(bus.layout.assets)
        indexer = AssetIndexer(bus, kv, durable="bench-assets", fetch_wait_seconds=0.1)
        halt = asyncio.Event()
        running = asyncio.create_task(indexer.run(halt))
        sink = nats_event_sink(settings)
        assert sink is not None
        previous = _sink.set_event_sink(sink)

        @flow
        def produce() -> None:
            for i in range(count):
                materialize(f"s3://bench/catalog/{i:06d}")(lambda: None)()

        start = time.perf_counter()
        try:
            await asyncio.to_thread(produce)
            await asyncio.to_thread(sink.flush)
            async with asyncio.timeout(600):
                while indexer.indexed < count:  # noqa: ASYNC110 - a counter, polled
                    await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - start
        finally:
            _sink.set_event_sink(previous)
            sink.close()
            halt.set()
            await running
        records = await list_assets(kv, prefix="s3://bench/catalog/")
        delays = sorted((r.updated - r.latest_materialization.time).total_seconds() * 1000
                        for r in records if r.latest_materialization is not None)
        await bus.destroy_layout()
    return statistics.median(delays), delays[max(0, int(len(delays) * 0.99) - 1)], count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="task calls per run")
    parser.add_argument("--assets", type=int, default=500, help="materialisations to index")
    args = parser.parse_args()
    os.environ.setdefault("FLOWBUS_LOGGING_LEVEL", "WARNING")
    for name, us in _per_call_us(args.calls).items():
        print(f"{name:<30} {us:8.1f} us per call (median of 5 runs of {args.calls})")
    with tempfile.TemporaryDirectory() as data, EmbeddedNats(Path(data)) as server:
        p50, p99, rate = asyncio.run(_catalog(server.url, args.assets))
    print(f"event -> catalog record        p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
          f"({rate:.0f} records/s over {args.assets} materialisations)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
