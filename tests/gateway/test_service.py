"""Health, readiness, metrics, NATS outages, and restarts losing nothing accepted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
from gateway_helpers import ADMIN_KEY, stored_events

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.settings import NatsSettings
from gateway.service import RunningGateway, running, serve
from gateway.settings import GatewaySettings
from tests.astparse import parse_file

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def ce(i: int) -> bytes:
    return json.dumps({"specversion": "1.0", "id": f"e{i}", "source": "/t", "type": "a.b",
                       "data": {"i": i}}).encode()


async def test_healthz_answers_without_a_key(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"


async def test_readyz_is_ready_when_nats_and_layout_are_there(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/readyz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ready"


async def test_readyz_names_what_is_missing_from_the_layout(bus: Bus, anonymous: aiohttp.ClientSession) -> None:
    await bus.destroy_layout()
    async with anonymous.get("/readyz") as r:
        body = await r.json()
        assert r.status == 503 and bus.layout.events_stream in body["reason"]


async def test_metrics_count_accepted_events(client: aiohttp.ClientSession) -> None:
    async with client.post("/events", data=ce(1), headers=STRUCTURED) as r:
        assert r.status == 202
    async with client.get("/metrics") as r:
        text = await r.text()
    assert 'flowbus_gateway_events_accepted_total{mode="structured"} 1.0' in text
    assert 'flowbus_gateway_requests_total{method="POST",route="/events",status="2xx"}' in text


async def test_nats_down_gives_503_with_retry_after_then_202_once_back(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path).start()
    settings = NatsSettings(nats_url=[server.url], namespace="gwdown", nats_request_timeout=0.5)
    bus = await Bus.connect(settings)
    try:
        async with running(bus, GatewaySettings(port=0, auth=False)) as gw:
            async with aiohttp.ClientSession(base_url=gw.url) as s:
                async with s.post("/events", data=ce(0), headers=STRUCTURED) as r:
                    assert r.status == 202
                port = server.port
                server.stop()
                async with s.post("/events", data=ce(1), headers=STRUCTURED) as r:
                    assert r.status == 503 and r.headers["Retry-After"] == "2"
                    assert "retry later" in (await r.json(content_type=None))["detail"]
                async with s.get("/readyz") as r:
                    assert r.status == 503
                async with s.post("/api/v1/variables", json={"name": "v", "value": 1}) as r:
                    assert r.status == 503 and "Retry-After" in r.headers
                server = EmbeddedNats(tmp_path, port=port).start()
                for _ in range(200):
                    if bus.is_connected:
                        break
                    await asyncio.sleep(0.05)
                async with s.post("/events", data=ce(1), headers=STRUCTURED) as r:
                    assert r.status == 202
        assert [e.id for e in await stored_events(bus)] == ["e0", "e1"]
    finally:
        await bus.close()
        server.close()


async def _post_all(url: str, ids: range, accepted: list[int],
                    some_accepted: asyncio.Event | None = None) -> None:
    async with aiohttp.ClientSession(base_url=url) as s:
        async def one(i: int) -> None:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.post("/events", data=ce(i), headers=STRUCTURED) as r:
                    if r.status == 202:
                        accepted.append(i)
                        if some_accepted is not None and len(accepted) >= 20:
                            some_accepted.set()

        await asyncio.gather(*(one(i) for i in ids))


async def test_events_accepted_before_a_restart_are_all_in_the_stream(bus: Bus) -> None:
    settings = GatewaySettings(port=0, auth=False, drain_timeout_seconds=5)
    accepted: list[int] = []
    stack = contextlib.AsyncExitStack()
    gw: RunningGateway = await stack.enter_async_context(running(bus, settings))
    some_accepted = asyncio.Event()
    posting = asyncio.create_task(_post_all(gw.url, range(300), accepted, some_accepted))
    await some_accepted.wait()
    await stack.aclose()  # shut down while requests are in flight
    await posting
    async with running(bus, settings) as again:
        await _post_all(again.url, range(300, 310), accepted)
    stored = {e.data["i"] for e in await stored_events(bus)}
    assert set(accepted) <= stored and set(range(300, 310)) <= stored


async def test_serve_connects_listens_and_stops_on_the_stop_event(nats_settings: NatsSettings) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(serve(nats_settings, GatewaySettings(port=0, admin_api_key=ADMIN_KEY),
                                     ready=ready, stop=stop, announce=urls.append))
    await asyncio.wait_for(ready.wait(), 10)
    async with aiohttp.ClientSession(base_url=urls[0]) as s, s.get("/readyz") as r:
        assert r.status == 200
    stop.set()
    await asyncio.wait_for(task, 10)
    async with await Bus.connect(nats_settings) as bus:
        await bus.destroy_layout()


async def test_a_corrupt_stored_record_is_a_500_without_a_stack_trace(client: aiohttp.ClientSession, bus: Bus) -> None:
    kv = await bus.kv(bus.layout.deployments)
    await kv.put("broken", b'{"name": "broken"}')
    async with client.get("/api/v1/deployments/broken") as r:
        body = await r.text()
        assert r.status == 500 and r.content_type == "application/problem+json"
    assert "Traceback" not in body and "internal error" in body


def test_gateway_imports_neither_nats_nor_the_other_services() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "gateway"
    for path in root.rglob("*.py"):
        for node in ast.walk(parse_file(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"nats", "orchestrator", "runners", "flowbus"}, (path, name)
