"""Benchmark event sources: messages per second from each broker into the events stream,
and the added latency from broker publish to event stored.

Starts everything itself on free ports: flowbus's nats-server, another application's
nats-server, and (when installed) mosquitto and RabbitMQ, with the sources running
in-process as a gateway runs them. Prints, per kind:

- throughput: N messages published as fast as the broker takes them, until all N
  events are stored (messages/s);
- latency: one message at a time, from the publish to the event appearing on the
  events subject (p50, p99 in ms).

Usage: python bench/sources.py [--messages N] [--latency N] [--kinds nats,nats-jetstream,mqtt,amqp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import nats  # noqa: E402

from events.bus import Bus  # noqa: E402
from events.embedded import EmbeddedNats  # noqa: E402
from events.settings import NatsSettings  # noqa: E402
from events.source_store import SourceStore  # noqa: E402
from events.sources import SourceSpec  # noqa: E402
from gateway.sources.manager import run_sources  # noqa: E402
from gateway.sources.settings import SourcesSettings  # noqa: E402

Publish = Callable[[list[bytes]], Awaitable[None]]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_counter: dict[str, Any] = {}


async def _stored(bus: Bus) -> int:
    """Events stored so far (one stream_info on a connection of its own, every 20 ms)."""
    if "js" not in _counter:
        _counter["nc"] = await nats.connect(bus.settings.nats_url)
        _counter["js"] = _counter["nc"].jetstream()
    info = await _counter["js"].stream_info(bus.layout.events_stream)
    return int(info.state.messages)


async def _wait_status(store: SourceStore, name: str, state: str) -> None:
    for _ in range(1200):
        status = await store.status(name)
        if status is not None and status.state == state:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"source {name} is not {state}: {await store.status(name)}")


async def _wait_connected(store: SourceStore, name: str) -> None:
    await _wait_status(store, name, "connected")


async def measure(bus: Bus, store: SourceStore, spec: dict[str, Any], publish: Publish,
                  n: int, n_latency: int, *, prefill: bool = True) -> tuple[float, float, float]:
    await store.create(SourceSpec.model_validate(spec))
    await _wait_connected(store, spec["name"])
    base = await _stored(bus)
    bodies = [json.dumps({"i": i, "payload": "x" * 100}).encode() for i in range(n)]
    if prefill:
        # The broker keeps messages: fill it while the source is paused, then time the drain,
        # so the figure is the source's rate rather than the publisher's.
        await store.set_paused(spec["name"], True)
        await _wait_status(store, spec["name"], "paused")
        await publish(bodies)
        start = time.perf_counter()
        await store.set_paused(spec["name"], False)
    else:
        start = time.perf_counter()
        await publish(bodies)
    while True:
        if await _stored(bus) >= base + n:
            break
        await asyncio.sleep(0.02)
    rate = n / (time.perf_counter() - start)
    await _wait_connected(store, spec["name"])

    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_event(_msg: Any) -> None:
        arrived.put_nowait(time.perf_counter())

    watcher = await nats.connect(bus.settings.nats_url)
    sub = await watcher.subscribe(f"{bus.layout.events_prefix}.bench.{spec['name']}",
                                  cb=on_event)
    await watcher.flush()
    latencies = []
    for i in range(n_latency):
        t0 = time.perf_counter()
        await publish([json.dumps({"lat": i}).encode()])
        got = await asyncio.wait_for(arrived.get(), 10)
        latencies.append(got - t0)
    await sub.unsubscribe()
    await watcher.close()
    await store.set_paused(spec["name"], True)
    return rate, _pct(latencies, 0.5) * 1000, _pct(latencies, 0.99) * 1000


def _mapping(name: str) -> dict[str, Any]:
    return {"type": f"bench.{name}", "data": "{{ body }}"}


async def main(args: argparse.Namespace) -> None:
    kinds = args.kinds.split(",")
    results: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "flowbus") as own, \
            EmbeddedNats(Path(tmp) / "app") as app:
        settings = NatsSettings(nats_url=[own.url], namespace="bench")
        bus = await Bus.connect(settings)
        store = await SourceStore.open(bus)
        stop = asyncio.Event()
        runner = asyncio.ensure_future(run_sources(bus, SourcesSettings(batch_max=args.batch), stop))
        nc = await nats.connect(app.url)
        js = nc.jetstream()
        try:
            if "nats" in kinds:
                async def pub_core(bodies: list[bytes]) -> None:
                    for body in bodies:
                        await nc.publish("bench.core", body)
                    await nc.flush()

                spec = {"name": "nats", "kind": "nats", "connection": {"url": app.url},
                        "subscription": {"subject": "bench.core"}, "mapping": _mapping("nats")}
                results.append(("nats", *await measure(bus, store, spec, pub_core,
                                                       args.messages, args.latency,
                                                       prefill=False)))
            if "nats-jetstream" in kinds:
                await js.add_stream(name="BENCH", subjects=["bench.js"])

                async def pub_js(bodies: list[bytes]) -> None:
                    futures = [await js.publish_async("bench.js", b) for b in bodies]
                    await asyncio.gather(*futures)

                spec = {"name": "jetstream", "kind": "nats-jetstream",
                        "connection": {"url": app.url}, "subscription": {"stream": "BENCH"},
                        "mapping": _mapping("jetstream")}
                results.append(("nats-jetstream", *await measure(bus, store, spec, pub_js,
                                                                 args.messages, args.latency)))
            if "mqtt" in kinds:
                results.append(("mqtt", *await _mqtt(bus, store, Path(tmp), args)))
            if "amqp" in kinds:
                results.append(("amqp", *await _amqp(bus, store, Path(tmp), args)))
        finally:
            stop.set()
            await runner
            await nc.close()
            if "nc" in _counter:
                await _counter["nc"].close()
            await bus.close()
    print(f"{'kind':<16}{'msgs/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, rate, p50, p99 in results:
        print(f"{kind:<16}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}")


async def _mqtt(bus: Bus, store: SourceStore, tmp: Path,
                args: argparse.Namespace) -> tuple[float, float, float]:
    import aiomqtt
    from sources.brokers import Mosquitto

    broker = Mosquitto(tmp / "mosquitto").start()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-pub") as client:
            async def pub(bodies: list[bytes]) -> None:
                await asyncio.gather(*(client.publish("bench/mqtt", b, qos=1) for b in bodies))

            spec = {"name": "mqtt", "kind": "mqtt", "connection": {"url": broker.url},
                    "subscription": {"topics": ["bench/#"], "qos": 1},
                    "mapping": _mapping("mqtt")}
            return await measure(bus, store, spec, pub, args.messages // 4, args.latency)
    finally:
        broker.stop()


async def _amqp(bus: Bus, store: SourceStore, tmp: Path,
                args: argparse.Namespace) -> tuple[float, float, float]:
    import aio_pika
    from sources.brokers import RabbitMQ

    broker = RabbitMQ(tmp / "rabbitmq").start()
    try:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("bench", durable=True)

            async def pub(bodies: list[bytes]) -> None:
                for b in bodies:
                    await channel.default_exchange.publish(
                        aio_pika.Message(b, message_id=str(time.perf_counter_ns())),
                        routing_key="bench")

            spec = {"name": "amqp", "kind": "amqp", "connection": {"url": broker.url},
                    "subscription": {"queue": "bench", "prefetch": 1000},
                    "mapping": _mapping("amqp")}
            return await measure(bus, store, spec, pub, args.messages // 4, args.latency)
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--latency", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256, help="FLOWBUS_SOURCES_BATCH_MAX")
    parser.add_argument("--kinds", default="nats,nats-jetstream,mqtt,amqp")
    asyncio.run(main(parser.parse_args()))
