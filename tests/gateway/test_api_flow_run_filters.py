"""The flow-run list's index over HTTP: new filters, read-your-writes, deletes, bad filters.

Runs are created by the orchestrator's run creation; cancels and deletes go through the
API to an orchestrator's control desk, as a user's would.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY, listed, problem

from events.bus import Bus
from orchestrator.control import ControlDesk
from tests.created_runs import T0, created_run

R = "/api/v1/flow-runs"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_flow_tag_and_text_filters(client: aiohttp.ClientSession, bus: Bus) -> None:
    await created_run(bus, "r1", flow="load", tags=["prod"], name="nightly-r1", created=at(1))
    await created_run(bus, "r2", flow="load", tags=["dev"], name="nightly-r2", created=at(2))
    await created_run(bus, "r3", flow="clean", tags=["prod"], name="nightly-r3", created=at(3))
    assert await listed(client, flow="load") == (["r2", "r1"], 2)
    assert await listed(client, tag="prod") == (["r3", "r1"], 2)
    assert await listed(client, tag="prod", flow="load") == (["r1"], 1)
    assert await listed(client, q="NIGHTLY-R2") == (["r2"], 1)
    assert await listed(client, q="nightly", limit="1", offset="1") == (["r2"], 3)


async def test_a_run_written_just_before_the_request_is_listed(client: aiohttp.ClientSession,
                                                               bus: Bus) -> None:
    for i in range(20):
        await created_run(bus, f"w{i}", created=at(i))
        page, total = await listed(client, limit="1")
        assert page == [f"w{i}"] and total == i + 1


async def test_state_changes_and_deletes_move_runs_between_lists(
    client: aiohttp.ClientSession, bus: Bus, desk: ControlDesk
) -> None:
    await created_run(bus, "r1")
    assert await listed(client, state="Scheduled") == (["r1"], 1)
    async with client.post(f"{R}/r1/cancel") as r:
        assert r.status == 200, await r.text()
    assert await listed(client, state="Scheduled") == ([], 0)
    assert await listed(client, state="Cancelled") == (["r1"], 1)
    async with client.delete(f"{R}/r1") as r:
        assert r.status == 204, await r.text()
    await created_run(bus, "r2", created=at(1))  # a later write: the request waits past the delete too
    assert await listed(client) == (["r2"], 1)


@pytest.mark.parametrize("params", [{"q": "x" * 300}, {"tag": "t" * 300}, {"flow": ""},
                                    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}])
async def test_odd_filters_are_answered_plainly(client: aiohttp.ClientSession,
                                                params: dict[str, str]) -> None:
    async with client.get(R, params=params) as r:
        body = await r.json(content_type=None)
        if r.status == 200:
            assert body["items"] == [] and body["total"] == 0
        else:
            assert r.status == 400 and problem(body)


async def test_a_text_of_under_3_characters_is_refused_naming_the_minimum(
    client: aiohttp.ClientSession, anonymous: aiohttp.ClientSession,
) -> None:
    for q in ("a", "ab", "é1"):
        async with client.get(R, params={"q": q}) as r:
            assert r.status == 400  # as every other bad filter
            assert "at least 3" in problem(await r.json(content_type=None))
    async with client.get(R, params={"q": ""}) as r:  # an empty search box: no text filter
        assert r.status == 200
    async with client.get(R, params={"q": "abc"}) as r:
        assert r.status == 200
    key = ADMIN_KEY
    async with aiohttp.ClientSession(base_url=str(anonymous._base_url),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as ui:
        async with ui.post("/ui/login", data={"api_key": key, "next": "/ui/runs"}) as r:
            assert r.status == 200
        async with ui.get("/ui/runs", params={"q": "ab"}) as r:
            assert r.status == 400 and "at least 3" in await r.text()
