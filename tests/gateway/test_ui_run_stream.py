"""A run page's live stream starts with the run's state: the page was rendered before
the stream opened, and the run may have changed (even ended) in between."""

from __future__ import annotations

import asyncio

import aiohttp
from gateway_helpers import ADMIN_KEY
from test_ui_http import browser, make_deployment

from events.bus import Bus
from gateway.service import RunningGateway
from tests.automations.support import start


async def test_the_run_stream_first_sends_the_state_the_run_is_in(
    gateway: RunningGateway, client: aiohttp.ClientSession, bus: Bus,
) -> None:
    running = await start(bus)
    try:
        await make_deployment(client)
        async with client.post("/api/v1/deployments/calc/runs",
                               json={"parameters": {"n": 1}}) as r:
            assert r.status == 202, await r.text()
            run_id = (await r.json())["flow_run_id"]
        for _ in range(300):
            async with client.get(f"/api/v1/flow-runs/{run_id}") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert r.status == 200, "the orchestrator did not create the run"
        async with await browser(gateway, ADMIN_KEY) as session, \
                session.get(f"/ui/runs/{run_id}/live") as r:
            assert r.status == 200
            seen = b""
            async with asyncio.timeout(10):
                while b"\n\n" not in seen.removeprefix(b": connected\n\n"):
                    seen += await r.content.readany()
        first = seen.removeprefix(b": connected\n\n").split(b"\n\n", 1)[0].decode()
        assert first.startswith("event: state\n") and "Scheduled" in first, first
    finally:
        await running.close()
