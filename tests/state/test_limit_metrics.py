"""The orchestrator exports, per named concurrency limit, the slots in use and the waiters."""

from __future__ import annotations

import asyncio

import aiohttp

from events import concurrency
from events.bus import Bus
from events.embedded import free_port
from events.settings import NatsSettings
from orchestrator.service import serve as serve_orchestrator
from orchestrator.settings import OrchestratorSettings


async def test_limit_gauges_follow_the_slots_and_waiters(bus: Bus, nats_settings: NatsSettings) -> None:
    kv = await bus.kv(bus.layout.concurrency)
    await concurrency.set_limit(kv, "db", 2)
    held = await concurrency.acquire_many(kv, "db", "holder-1", occupy=1, ttl=60)
    assert held
    await concurrency.mark_waiting(kv, "db", "holder-2", ttl=60)
    port = free_port()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_orchestrator(
        nats_settings, OrchestratorSettings(metrics_port=port, tick_seconds=0.2), ready=ready, stop=stop))
    wanted = ['flowbus_concurrency_limit_slots_in_use{limit="db"} 1.0',
              'flowbus_concurrency_limit_waiters{limit="db"} 1.0']
    text = ""
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                if all(w in text for w in wanted):
                    break
                await asyncio.sleep(0.1)
            assert all(w in text for w in wanted), text[-2000:]
            await concurrency.release_all(kv, held)
            await concurrency.unmark_waiting(kv, "db", "holder-2")
            for _ in range(300):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                if 'flowbus_concurrency_limit_slots_in_use{limit="db"} 0.0' in text:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
    assert 'flowbus_concurrency_limit_slots_in_use{limit="db"} 0.0' in text
    assert 'flowbus_concurrency_limit_waiters{limit="db"} 0.0' in text
