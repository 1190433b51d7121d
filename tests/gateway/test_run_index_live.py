"""The run index over HTTP while real runs are created, change state and are deleted.

Runs are asked for through the API and created by a real orchestrator (in this event
loop); cancels and deletes go through the API to it, as a user's would. Filter values
keep bitmaps from two runs on, so the bitmaps are the ones live changes maintain. Run
a second time with every gram common and scans always chosen, every text (one in
every run too) is compared with every run's text in one pass, and every time range
is found from the runs' creation times, alone and with the other filters.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY, listed
from test_run_index import brute

from events.bus import Bus
from events.records import FlowRun
from gateway import runindex
from gateway.runindex import RunFilter
from tests.automations.support import start

R = "/api/v1/flow-runs"


async def stored(client: aiohttp.ClientSession, run_id: str) -> FlowRun | None:
    async with client.get(f"{R}/{run_id}") as r:
        return FlowRun.model_validate(await r.json()) if r.status == 200 else None


@pytest.mark.parametrize("scanned", [False, True], ids=["grams", "scans"])
async def test_lists_stay_exact_while_runs_are_created_cancelled_and_deleted(
    start_gateway: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch, scanned: bool,
) -> None:
    monkeypatch.setattr(runindex, "BITMAP_FLOOR", 2)
    if scanned:
        monkeypatch.setattr(runindex, "COMMON_GRAM_FLOOR", 0)
        monkeypatch.setattr(runindex, "SCAN_SHARE", 0.0)
    orchestrator = await start(bus)
    try:
        async with start_gateway() as gw, aiohttp.ClientSession(
                base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
            for name, flow in (("alpha", "fa"), ("beta", "fb")):
                async with client.post("/api/v1/deployments",
                                       json={"name": name, "flow_name": flow}) as r:
                    assert r.status == 201, await r.text()
            ids: list[str] = []
            await create(client, ids, range(12))
            await check(client, ids)
            for run_id in ids[0:8:2]:
                async with client.post(f"{R}/{run_id}/cancel") as r:
                    assert r.status == 200, await r.text()
            for run_id in ids[1:9:4]:
                async with client.delete(f"{R}/{run_id}") as r:
                    assert r.status == 204, await r.text()
            await check(client, ids)
            assert (await listed(client, limit="1"))[1] == len(ids) - 2
            await create(client, ids, range(12, 16), expect=len(ids) + 2)  # take freed slots
            await check(client, ids)
    finally:
        await orchestrator.close()


async def create(client: aiohttp.ClientSession, ids: list[str], numbers: range,
                 expect: int | None = None) -> None:
    """Ask for one run per number and wait until the orchestrator has stored them all."""
    for i in numbers:
        body = {"name": f"live-{i}", "tags": ["odd", "x"] if i % 2 else ["even"]}
        async with client.post(f"/api/v1/deployments/{('alpha', 'beta')[i % 3 % 2]}/runs",
                               json=body) as r:
            assert r.status == 202, await r.text()
            ids.append((await r.json())["flow_run_id"])
    expect = len(ids) if expect is None else expect
    for _ in range(300):  # the orchestrator creates the records
        if (await listed(client, limit="1"))[1] == expect:
            break
        await asyncio.sleep(0.1)
    assert (await listed(client, limit="1"))[1] == expect


async def check(client: aiohttp.ClientSession, ids: list[str]) -> None:
    """Every filter's pages equal filtering the stored runs (read one by one) by hand."""
    runs = {run.id: run for run in [await stored(client, i) for i in ids] if run is not None}
    states = sorted({run.state.name for run in runs.values()})
    times = sorted(run.created for run in runs.values())
    since, until = times[2].isoformat(), times[-3].isoformat()
    wheres: list[dict[str, str]] = [
        {}, {"deployment": "alpha"}, {"tag": "odd"}, {"flow": "fb", "tag": "x"},
        {"q": "live-1"}, {"q": "LIVE-1", "tag": "odd"}, {"deployment": "beta", "tag": "even"},
        *({"state": s} for s in states), *({"state": s, "deployment": "alpha"} for s in states),
        # a text in every run, alone and with each kind of filter
        {"q": "live-"}, {"q": "ive-", "deployment": "alpha"}, {"q": "live", "flow": "fb", "tag": "x"},
        *({"q": "live-", "state": s} for s in states),
        {"q": "live-", "since": since}, {"q": "live-1", "until": until},
        {"q": "live-", "since": since, "until": until, "tag": "odd"},
        {"since": since, "until": until}, {"since": since, "deployment": "alpha", "tag": "even"},
    ]
    for params in wheres:
        where = RunFilter(state=params.get("state"), deployment=params.get("deployment"),
                          flow=params.get("flow"), tag=params.get("tag"), text=params.get("q"),
                          since=_time(params.get("since")), until=_time(params.get("until")))
        expected = brute(runs, where)
        for offset in (0, 1, len(expected) - 1):
            page = await listed(client, **params, limit="2", offset=str(max(0, offset)))
            assert page == (expected[max(0, offset) : max(0, offset) + 2], len(expected)), params


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
