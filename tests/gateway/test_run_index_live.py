"""The run index over HTTP while real runs are created, change state and are deleted.

Runs are asked for through the API and created by a real orchestrator (in this event
loop); cancels and deletes go through the API to it, as a user's would. Filter values
keep bitmaps from two runs on, so the bitmaps are the ones live changes maintain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY
from test_run_index import brute

from events.bus import Bus
from events.records import FlowRun
from gateway import runindex
from gateway.runindex import RunFilter
from tests.automations.support import start

R = "/api/v1/flow-runs"


async def listed(client: aiohttp.ClientSession, **params: str) -> tuple[list[str], int]:
    async with client.get(R, params=params) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    return [item["id"] for item in body["items"]], body["total"]


async def stored(client: aiohttp.ClientSession, run_id: str) -> FlowRun | None:
    async with client.get(f"{R}/{run_id}") as r:
        return FlowRun.model_validate(await r.json()) if r.status == 200 else None


async def test_lists_stay_exact_while_runs_are_created_cancelled_and_deleted(
    start_gateway: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runindex, "BITMAP_FLOOR", 2)
    orchestrator = await start(bus)
    try:
        async with start_gateway() as gw, aiohttp.ClientSession(
                base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            for name, flow in (("alpha", "fa"), ("beta", "fb")):
                async with client.post("/api/v1/deployments",
                                       json={"name": name, "flow_name": flow}) as r:
                    assert r.status == 201, await r.text()
            ids: list[str] = []
            for i in range(12):
                body = {"name": f"live-{i}", "tags": ["odd", "x"] if i % 2 else ["even"]}
                async with client.post(f"/api/v1/deployments/{('alpha', 'beta')[i % 3 % 2]}/runs",
                                       json=body) as r:
                    assert r.status == 202, await r.text()
                    ids.append((await r.json())["flow_run_id"])
            for _ in range(300):  # the orchestrator creates the records
                if (await listed(client, limit="1"))[1] == len(ids):
                    break
                await asyncio.sleep(0.1)
            assert (await listed(client, limit="1"))[1] == len(ids)
            await check(client, ids)
            for run_id in ids[0:8:2]:
                async with client.post(f"{R}/{run_id}/cancel") as r:
                    assert r.status == 200, await r.text()
            for run_id in ids[1:9:4]:
                async with client.delete(f"{R}/{run_id}") as r:
                    assert r.status == 204, await r.text()
            await check(client, ids)
            assert (await listed(client, limit="1"))[1] == len(ids) - 2
    finally:
        await orchestrator.close()


async def check(client: aiohttp.ClientSession, ids: list[str]) -> None:
    """Every filter's pages equal filtering the stored runs (read one by one) by hand."""
    runs = {run.id: run for run in [await stored(client, i) for i in ids] if run is not None}
    states = sorted({run.state.name for run in runs.values()})
    wheres: list[dict[str, str]] = [
        {}, {"deployment": "alpha"}, {"tag": "odd"}, {"flow": "fb", "tag": "x"},
        {"q": "live-1"}, {"q": "LIVE-1", "tag": "odd"}, {"deployment": "beta", "tag": "even"},
        *({"state": s} for s in states), *({"state": s, "deployment": "alpha"} for s in states),
    ]
    for params in wheres:
        where = RunFilter(state=params.get("state"), deployment=params.get("deployment"),
                          flow=params.get("flow"), tag=params.get("tag"), text=params.get("q"))
        expected = brute(runs, where)
        for offset in (0, 1, len(expected) - 1):
            page = await listed(client, **params, limit="2", offset=str(max(0, offset)))
            assert page == (expected[max(0, offset) : max(0, offset) + 2], len(expected)), params
