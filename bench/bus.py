"""Benchmark the events backbone: publish one at a time, pipelined, and consume+ack.

Starts its own embedded nats-server with JetStream on a free port, so it needs
nothing running. Prints:

- single publish (await each ack): events/s and p50/p99 latency;
- pipelined publish (bounded window of unacknowledged publishes): events/s;
- consume + ack through a durable pull consumer: events/s, with acks confirmed
  one by one, then with unconfirmed acks (written without waiting; the
  orchestrator's way for events nothing reacts to);
- the benchmark process's CPU per event for each, and the load average.

With ``--uvloop`` the benchmark's event loop is uvloop's (when installed).

Usage: python bench/bus.py [--events N] [--single N] [--window N] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.embedded import EmbeddedNats
from events.settings import NatsSettings


def _events(n: int, prefix: str) -> list[CloudEvent]:
    return [
        CloudEvent.create("com.example.bench", source="/bench", id=f"{prefix}-{i}",
                          data={"i": i, "payload": "x" * 100})
        for i in range(n)
    ]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(url: str, n_single: int, n_pipelined: int, window: int) -> None:
    settings = NatsSettings(nats_url=[url], namespace="bench", publish_max_in_flight=window)
    async with await Bus.connect(settings) as bus:
        # Warm up the connection and the stream.
        await bus.publish_many(_events(500, "warm"))

        latencies = []
        single = _events(n_single, "single")
        cpu = time.process_time()
        start = time.perf_counter()
        for ev in single:
            t0 = time.perf_counter()
            await bus.publish(ev)
            latencies.append((time.perf_counter() - t0) * 1000)
        single_rate = n_single / (time.perf_counter() - start)
        single_cpu = (time.process_time() - cpu) / n_single * 1e6

        pipelined = _events(n_pipelined, "pipe")
        runs = []
        for chunk in range(3):
            part = pipelined[chunk::3]
            t0 = time.perf_counter()
            await bus.publish_many(part)
            runs.append(len(part) / (time.perf_counter() - t0))

        total = 500 + n_single + n_pipelined
        consume: dict[bool, tuple[float, float, int]] = {}
        for confirm in (True, False):
            consumer = await bus.consumer(f"bench-reader-{confirm}", max_ack_pending=1024)
            got = 0
            cpu = time.process_time()
            t0 = time.perf_counter()
            while got < total:
                batch = await consumer.fetch(min(256, total - got), max_wait=2)
                if not batch:
                    break
                await asyncio.gather(*(d.ack(confirm=confirm) for d in batch))
                got += len(batch)
            consume[confirm] = (got / (time.perf_counter() - t0),
                                (time.process_time() - cpu) / max(1, got) * 1e6, got)

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"single publish (ack awaited): {single_rate:,.0f} events/s, "
          f"p50 {statistics.median(latencies):.3f} ms, p99 {_pct(latencies, 0.99):.3f} ms, "
          f"CPU {single_cpu:.0f} us/event ({n_single} events)")
    print(f"pipelined publish (window {window}): median {statistics.median(runs):,.0f} events/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in runs)}; {n_pipelined} events)")
    for confirm, label in ((True, "confirmed"), (False, "unconfirmed")):
        rate, per_event, got = consume[confirm]
        print(f"consume + {label} ack (pull, batches of 256): {rate:,.0f} events/s, "
              f"CPU {per_event:.0f} us/event ({got} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"event loop: {'uvloop' if args.uvloop else 'asyncio'}")
    with EmbeddedNats() as server:
        asyncio.run(bench(server.url, args.single, args.events, args.window))


if __name__ == "__main__":
    main()
