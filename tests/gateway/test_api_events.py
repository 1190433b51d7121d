"""Recent events and live streams (Server-Sent Events and WebSocket) filtered by type pattern."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent
from tests.shutdown import wait_stopped

E = "/api/v1/events"


def ev(type_: str, i: int) -> CloudEvent:
    return CloudEvent.create(type_, source="/t", id=f"{type_}-{i}", data={"i": i})


async def test_recent_events_filtered_by_pattern(client: aiohttp.ClientSession, bus: Bus) -> None:
    await bus.publish_many([ev("com.github.push", 1), ev("com.stripe.charge", 2),
                            ev("com.github.pull_request.opened", 3)])
    async with client.get(E, params={"pattern": "com.github.*"}) as r:
        body = await r.json()
    assert [e["id"] for e in body["items"]] == ["com.github.push-1", "com.github.pull_request.opened-3"]
    assert body["next_since"] is None


async def test_recent_events_page_with_next_since(client: aiohttp.ClientSession, bus: Bus) -> None:
    await bus.publish_many([ev("a.b", i) for i in range(5)])
    async with client.get(E, params={"limit": "3"}) as r:
        body = await r.json()
    assert len(body["items"]) == 3 and body["next_since"] is not None


async def test_recent_events_since_the_future_is_empty(client: aiohttp.ClientSession, bus: Bus) -> None:
    await bus.publish(ev("a.b", 1))
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with client.get(E, params={"since": since}) as r:
        assert (await r.json())["items"] == []


@pytest.mark.parametrize("params", [{"pattern": "a..b"}, {"pattern": "a.>"}, {"since": "then"},
                                    {"limit": "0"}])
async def test_bad_event_queries_are_400(client: aiohttp.ClientSession, params: dict[str, str]) -> None:
    for path in (E, f"{E}/stream", f"{E}/ws"):
        if path != E and "pattern" not in params:
            continue
        async with client.get(path, params=params) as r:
            assert r.status == 400, (path, params)


async def publish_soon(bus: Bus, events: list[CloudEvent]) -> None:
    await asyncio.sleep(0.3)
    for event in events:
        await bus.publish(event)


async def test_sse_streams_matching_events(client: aiohttp.ClientSession, bus: Bus) -> None:
    task = asyncio.create_task(publish_soon(bus, [ev("x.other", 0), ev("com.github.push", 1),
                                                  ev("com.github.push", 2)]))
    got: list[dict[str, object]] = []
    async with client.get(f"{E}/stream", params={"pattern": "com.github.*"}) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
                if len(got) == 2:
                    break
    await wait_stopped(task, what="the publisher")
    assert [e["id"] for e in got] == ["com.github.push-1", "com.github.push-2"]


async def test_websocket_streams_matching_events(client: aiohttp.ClientSession, bus: Bus) -> None:
    task = asyncio.create_task(publish_soon(bus, [ev("x.other", 0), ev("flowbus.flow-run.Failed", 1)]))
    async with client.ws_connect(f"{E}/ws", params={"pattern": "flowbus.flow-run.*"}) as ws:
        message = await asyncio.wait_for(ws.receive_json(), 5)
    await wait_stopped(task, what="the publisher")
    assert message["type"] == "flowbus.flow-run.Failed"


async def test_sse_needs_the_read_scope(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get(f"{E}/stream") as r:
        assert r.status == 401


async def test_streams_end_when_the_gateway_shuts_down(start_gateway: object, bus: Bus) -> None:
    from gateway_helpers import ADMIN_KEY

    started = asyncio.get_running_loop().time()
    async with start_gateway(drain_timeout_seconds=10) as gw:  # type: ignore[operator]
        session = aiohttp.ClientSession(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        response = await session.get(f"{E}/stream")
        assert response.status == 200
    # Shutdown did not wait out the drain timeout for the open stream.
    assert asyncio.get_running_loop().time() - started < 5
    response.close()
    await session.close()


async def test_streams_past_the_limit_are_503(start_gateway: object) -> None:
    from gateway_helpers import ADMIN_KEY

    async with start_gateway(streams_max_open=1) as gw, aiohttp.ClientSession(  # type: ignore[operator]
        base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as s:
        first = await s.get(f"{E}/stream")
        assert first.status == 200
        async with s.get(f"{E}/stream") as second:
            assert second.status == 503 and "Retry-After" in second.headers
        first.close()
