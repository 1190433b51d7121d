"""A source's lag, traffic, dead letters and last error, as a running source records
them, on the API and the sources page."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import nats
from test_ui_http import browser, make_key

from events.bus import Bus
from events.settings import NatsSettings
from gateway.service import RunningGateway
from gateway.sources.manager import run_sources
from gateway.sources.settings import SourcesSettings
from tests.shutdown import stop_service


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, within: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_sources_show_lag_traffic_dead_letters_and_last_error(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
    nats_settings: NatsSettings,
) -> None:
    # Another application's stream on the same server, outside flowbus's namespace.
    stream = f"APP{uuid.uuid4().hex[:8].upper()}"
    nc = await nats.connect(nats_settings.nats_url[0])
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    for i in range(12):
        await js.publish(f"{stream}.orders", json.dumps({"kind": "order", "n": i}).encode())
    await js.publish(f"{stream}.orders", b'{"n": "no kind: no event type"}')
    for body in ({"name": "orders", "kind": "nats-jetstream",
                  "connection": {"url": nats_settings.nats_url[0]},
                  "subscription": {"stream": stream},
                  "mapping": {"type": "app.{{ body.kind }}", "data": "{{ body }}"}},
                 {"name": "down", "kind": "nats", "connection": {"url": "nats://127.0.0.1:9"},
                  "subscription": {"subject": "x.>"}}):
        async with client.post("/api/v1/sources", json=body) as r:
            assert r.status == 201, await r.text()
    settings = SourcesSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.5,
                               batch_max=5, drain_timeout_seconds=2, gateway_id="gw-ui")
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_sources(bus, settings, stop))
    try:
        async def settled() -> dict[str, Any] | None:
            async with client.get("/api/v1/sources/orders") as r:
                view = await r.json()
            activity = view.get("activity") or {}
            done = activity.get("messages_in") == 13 and activity.get("lag") == 0
            return view if done else None

        orders = await wait_for(settled, "the orders source to record its 13 messages")
        activity = orders["activity"]
        assert (activity["events_out"], activity["mapping_failures"]) == (12, 1)
        assert activity["gateway"] == "gw-ui" and activity["last_message"] is not None

        async def down_error() -> dict[str, Any] | None:
            async with client.get("/api/v1/sources/down") as r:
                view = await r.json()
            return view if (view.get("activity") or {}).get("last_error") else None

        down = await wait_for(down_error, "the down source to record its error")
        assert down["activity"]["lag"] is None and down["activity"]["messages_in"] == 0
        # Between attempts it is "error", during one "starting": the last error stays.
        assert down["status"]["state"] in ("error", "starting")

        async with await browser(gateway, await make_key(client, "read")) as reader:
            async with reader.get("/ui/sources") as r:
                page = await r.text()
            assert r.status == 200
        row = page.split('data-source="orders"', 1)[1].split("</tr>", 1)[0]
        assert "0 pending" in row and "13 / 12 / 1" in row
        assert '<td class="dead-letters">1</td>' in row and "none yet" not in row
        row = page.split('data-source="down"', 1)[1].split("</tr>", 1)[0]
        assert "127.0.0.1:9" in row and "none yet" in row
        assert '<td class="dead-letters">0</td>' in row
    finally:
        await stop_service(stop, task, what="the sources")
        await js.delete_stream(stream)
        await nc.close()
    async with client.delete("/api/v1/sources/orders") as r:
        assert r.status == 204
    kv = await bus.kv(bus.layout.sources)
    assert [k for k in await kv.keys() if k.endswith("orders")] == []
