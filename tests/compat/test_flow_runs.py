"""wait_for_flow_run against a real gateway on loopback and real NATS.

Runs are made by the orchestrator's run creation (tests.created_runs) and ended by
the product's cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events.bus import Bus
from events.deployments import request_cancel
from events.records import FlowRun
from flowbus.flow_runs import FlowRunWaitTimeout, wait_for_flow_run
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.created_runs import created_run

KEY = "compat-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


async def test_waits_until_the_run_is_final(api: RunningGateway, bus: Bus) -> None:
    await created_run(bus, "w-1")  # Scheduled: no runner takes it here
    waiting = asyncio.create_task(wait_for_flow_run("w-1", timeout=30, poll_interval=0.1))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await request_cancel(bus, "w-1")  # no runner holds it: Cancelled at once, a final state
    finished = await asyncio.wait_for(waiting, 30)
    assert finished.id == "w-1" and finished.state.name == "Cancelled"


async def test_gives_up_after_its_timeout(api: RunningGateway, bus: Bus) -> None:
    await created_run(bus, "w-2")
    with pytest.raises(FlowRunWaitTimeout, match=r"w-2 did not reach a final state within 0\.5 seconds"):
        await wait_for_flow_run("w-2", timeout=0.5, poll_interval=0.1)


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        await wait_for_flow_run("x", timeout=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        await wait_for_flow_run("x", poll_interval=0)


async def test_a_plain_call_in_sync_code_waits_too(api: RunningGateway, bus: Bus) -> None:
    await created_run(bus, "w-3", refused="parameters do not fit")  # stored Failed
    # A thread with no event loop is sync code: the call returns the record itself.
    finished = await asyncio.to_thread(wait_for_flow_run, "w-3", timeout=30, poll_interval=0.1)
    assert isinstance(finished, FlowRun) and finished.state.name == "Failed"
