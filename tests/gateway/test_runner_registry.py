"""The runner registry through the gateway: real runner processes, listed live.

Two ``flowbus runner`` processes write their records; the API and the runners page
list both with their slots; the record of one killed with SIGKILL expires (it is
shown stale from two missed heartbeats until then); one stopped cleanly deletes its record at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY
from test_ui_http import browser, make_key

from gateway.service import RunningGateway

ROOT = Path(__file__).resolve().parents[2]
Start = Callable[..., subprocess.Popen[bytes]]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def start_runner(flowbus_env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """Start ``flowbus runner`` processes; every one left is stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(runner_id: str, pool: str, limit: int, heartbeat: float) -> subprocess.Popen[bytes]:
        env = {**flowbus_env, "PYTHONPATH": str(ROOT), "FLOWBUS_RUNNER_RUNNER_ID": runner_id,
               "FLOWBUS_RUNNER_HEARTBEAT_INTERVAL": str(heartbeat),
               "FLOWBUS_RUNNER_ACK_WAIT": str(max(10.0, 5 * heartbeat)),
               "FLOWBUS_RUNNER_FETCH_WAIT": "0.2", "FLOWBUS_RUNNER_CODE_ROOT": str(tmp_path)}
        with open(tmp_path / f"{runner_id}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowbus.cli", "runner", "--pool", pool,
                 "--limit", str(limit), "--isolation", "inline"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


async def runners(client: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    async with client.get("/api/v1/runners") as r:
        assert r.status == 200, await r.text()
        return {item["runner_id"]: item for item in (await r.json())["items"]}


async def wait_for(client: aiohttp.ClientSession, what: str, seconds: float,
                   condition: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        listed = await runners(client)
        if condition(listed):
            return listed
        assert time.monotonic() < deadline, f"{what}: still {sorted(listed)} after {seconds}s"
        await asyncio.sleep(0.2)


async def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the runner did not exit"
        await asyncio.sleep(0.1)
    return proc.returncode


async def test_two_runners_are_listed_with_their_slots_and_leave_when_killed_or_stopped(
    gateway: RunningGateway, client: aiohttp.ClientSession, start_runner: Start,
) -> None:
    doomed = start_runner("doomed-1", "blue", 2, 0.5)
    # A long heartbeat: its record would outlive the test by far unless deleted on stop.
    tidy = start_runner("tidy-1", "green", 3, 5.0)
    listed = await wait_for(client, "both runners listed", 90,
                            lambda found: {"doomed-1", "tidy-1"} <= set(found))
    assert (listed["doomed-1"]["pool"], listed["doomed-1"]["limit"]) == ("blue", 2)
    assert (listed["tidy-1"]["pool"], listed["tidy-1"]["limit"]) == ("green", 3)
    for item in listed.values():
        assert item["in_use"] == 0 and item["runs"] == [] and item["stale"] is False
        assert item["isolation"] == "inline"
    assert {listed["doomed-1"]["pid"], listed["tidy-1"]["pid"]} == {doomed.pid, tidy.pid}
    first_beat = listed["doomed-1"]["heartbeat"]
    await wait_for(client, "a new heartbeat", 30,
                   lambda found: found["doomed-1"]["heartbeat"] != first_beat)

    async with client.get("/api/v1/runners?pool=green") as r:
        assert [i["runner_id"] for i in (await r.json())["items"]] == ["tidy-1"]
    async with await browser(gateway, await make_key(client, "read")) as reader:
        for path in ("/ui/runners", "/ui/runners/rows"):
            async with reader.get(path) as r:
                page = await r.text()
            assert r.status == 200, path
            blue = page.split('data-pool="blue"', 1)[1].split("</table>", 1)[0]
            assert 'data-runner="doomed-1"' in blue and "0 / 2" in blue and "live" in blue
            green = page.split('data-pool="green"', 1)[1].split("</table>", 1)[0]
            assert 'data-runner="tidy-1"' in green and "0 / 3" in green

    os.killpg(doomed.pid, signal.SIGKILL)
    await wait_exit(doomed, 20)
    killed_at = time.monotonic()
    listed = await wait_for(client, "the killed runner gone", 60,
                            lambda found: "doomed-1" not in found)
    # Stale after two heartbeats and a second, expired after three and a second (a 3 s
    # TTL): on this loaded machine, allow a generous bound.
    assert time.monotonic() - killed_at < 30
    assert "tidy-1" in listed and listed["tidy-1"]["stale"] is False

    os.killpg(tidy.pid, signal.SIGTERM)
    assert await wait_exit(tidy, 60) == 0
    stopped_at = time.monotonic()
    await wait_for(client, "the stopped runner gone", 5, lambda found: "tidy-1" not in found)
    # Deleted, not expired: its record's TTL (16 s) is far from over.
    assert time.monotonic() - stopped_at < 5
    async with await browser(gateway, ADMIN_KEY) as admin, admin.get("/ui/runners/rows") as r:
        assert r.status == 200 and "No runner is serving right now" in await r.text()


async def test_the_runner_list_refuses_bad_queries_and_needs_a_key(
    gateway: RunningGateway, client: aiohttp.ClientSession,
) -> None:
    for query in ("pool=%3Cscript%3E", "pool=" + "p" * 5000, "limit=0", "limit=zz",
                  "offset=-1", "bogus=1", "pool=a%00b"):
        async with client.get(f"/api/v1/runners?{query}") as r:
            body = await r.text()
            assert r.status == 400, (query, r.status, body)
            assert "<script>" not in body
    async with aiohttp.ClientSession(base_url=gateway.url) as anonymous, \
            anonymous.get("/api/v1/runners") as r:
        assert r.status == 401
    async with client.get("/api/v1/runners") as r:
        assert r.status == 200 and (await r.json())["items"] == []
