"""Orchestrator benchmark: matching throughput and event-to-job latency.

Run: ``PYTHONPATH=. python bench/orchestrator.py``. Prints

1. events matched per CPU second (decode + index lookup + label checks, one core)
   with 10 and with 10,000 deployment triggers, and the per-event cost ratio;
2. end-to-end throughput of the orchestrator consuming from an embedded NATS;
3. the time from an event's arrival to its run's job being published (p50, p99):
   from the handler taking the event, and from JetStream storing it.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events.bus import Bus
from events.cloudevent import CloudEvent, decode, encode
from events.embedded import EmbeddedNats
from events.records import Deployment
from events.settings import NatsSettings
from orchestrator.index import EventView, TriggerIndex, compile_triggers
from orchestrator.service import Orchestrator
from orchestrator.settings import OrchestratorSettings

NOW = datetime.now(UTC)


def _trigger(i: int) -> dict[str, object]:
    # A mix like a real installation: most exact names, some wildcards, label filters.
    if i % 10 == 0:
        return {"expect": [f"com.acme.team{i}.*"], "match": {"source": "/svc/*"}}
    if i % 10 == 5:
        return {"expect": [f"com.acme.team{i}.ord*.created"]}
    return {"expect": [f"com.acme.team{i}.order.created"], "match": {"source": ["/svc/a", "/svc/b"]}}


def build_index(n: int) -> TriggerIndex:
    index = TriggerIndex()
    per_deployment = 10
    for d in range(0, n, per_deployment):
        triggers = [_trigger(i) for i in range(d, min(n, d + per_deployment))]
        deployment = Deployment(name=f"d{d}", flow_name="f", triggers=triggers)
        index.replace_deployment(deployment.name, compile_triggers(deployment))
    return index


def _events(n: int) -> list[bytes]:
    rng = random.Random(7)
    bodies = []
    for _ in range(2000):
        team = rng.randrange(n)
        kind = rng.choice(["order.created", "order.paid"])
        bodies.append(encode(CloudEvent.create(f"com.acme.team{team}.{kind}", source="/svc/a",
                                               data={"order": rng.randrange(1000)})))
    return bodies


def _match_round(index: TriggerIndex, bodies: list[bytes], events: int) -> tuple[float, float]:
    """(events per CPU second, fraction matched) of one round."""
    matched = 0
    start = time.process_time()
    for k in range(events):
        view = EventView(decode(bodies[k % len(bodies)]), NOW)
        matched += bool(index.match(view))
    elapsed = time.process_time() - start
    return events / elapsed, matched / events


def matching_rates(sizes: tuple[int, ...], events: int = 20_000, rounds: int = 9) -> dict[int, tuple[float, float]]:
    """Best events per CPU second (and share matched) for each index size.

    CPU time of this process, so other work on the machine does not count, and the
    sizes take turns each round, so they meet the same conditions.
    """
    setups = {n: (build_index(n), _events(n)) for n in sizes}
    gc.collect()
    best: dict[int, tuple[float, float]] = {n: (0.0, 0.0) for n in sizes}
    for _ in range(rounds):
        for n, (index, bodies) in setups.items():
            rate, share = _match_round(index, bodies, events)
            if rate > best[n][0]:
                best[n] = (rate, share)
    return best


async def _until(check: Callable[[], bool], within: float = 60.0) -> None:
    for _ in range(int(within / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the benchmark did not reach its goal in time")


async def end_to_end(events: int = 3000, paced: int = 500) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp)) as server:
        settings = NatsSettings(nats_url=[server.url], namespace="bench")
        async with await Bus.connect(settings) as bus:
            kv = await bus.kv(bus.layout.deployments)
            deployment = Deployment(name="bench", flow_name="f",
                                    triggers=[{"expect": ["bench.hit"], "parameters": {"n": "{{ event.data.n }}"}}])
            await kv.put("bench", deployment.model_dump_json().encode())
            orch = Orchestrator(bus, OrchestratorSettings(tick_seconds=3600, fetch_wait_seconds=0.05))
            stop = asyncio.Event()
            task = asyncio.create_task(orch.run(stop))
            await orch.consuming.wait()
            await _until(lambda: orch.catalog.get("bench") is not None)

            # Latency: events one after the other, so queueing does not hide the path's cost.
            for n in range(paced):
                await bus.publish(CloudEvent.create("bench.hit", source="bench", data={"n": n}))
                await asyncio.sleep(0.004)
            await _until(lambda: len(orch.metrics.latency_samples) >= paced)
            handled = sorted(orch.metrics.latency_samples)
            stored = sorted(orch.metrics.stored_latency_samples)
            print(f"event -> job published, from the handler taking it: "
                  f"p50 {1000 * statistics.median(handled):.2f} ms, "
                  f"p99 {1000 * handled[int(len(handled) * 0.99)]:.2f} ms ({paced} events)")
            print(f"event -> job published, from JetStream storing it:   "
                  f"p50 {1000 * statistics.median(stored):.2f} ms, "
                  f"p99 {1000 * stored[int(len(stored) * 0.99)]:.2f} ms")

            # Throughput: a burst of matching events (each creates a run: record, job, event).
            burst = [CloudEvent.create("bench.hit", source="burst", data={"n": n}) for n in range(events)]
            before = len(orch.metrics.latency_samples)
            start = time.perf_counter()
            await bus.publish_many(burst)
            await _until(lambda: len(orch.metrics.latency_samples) - before >= events)
            elapsed = time.perf_counter() - start
            print(f"end to end, every event creating a run: {events / elapsed:,.0f} runs/s "
                  f"({events} events)")

            misses = [CloudEvent.create("bench.miss", source="burst") for _ in range(events)]
            consumed = orch.metrics.events.labels("unmatched")
            before_miss = consumed._value.get()
            start = time.perf_counter()
            await bus.publish_many(misses)
            await _until(lambda: consumed._value.get() - before_miss >= events)
            elapsed = time.perf_counter() - start
            print(f"end to end, events matching no trigger: {events / elapsed:,.0f} events/s")
            stop.set()
            await task
            await bus.destroy_layout()


def main() -> None:
    rates = matching_rates((10, 10_000))
    (small, hit_small), (large, hit_large) = rates[10], rates[10_000]
    print(f"matching, 10 triggers:     {small:,.0f} events/s ({hit_small:.0%} matched)")
    print(f"matching, 10,000 triggers: {large:,.0f} events/s ({hit_large:.0%} matched)")
    print(f"per-event cost at 10,000 / at 10: {small / large:.2f}x")
    asyncio.run(end_to_end())


if __name__ == "__main__":
    main()
