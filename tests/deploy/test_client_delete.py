"""Deleting flow runs: ``DELETE /api/v1/flow-runs/{id}`` and ``client.delete_flow_run``.

Runs come from their real producers: the orchestrator creates a Scheduled run when
one is requested through the API (or a Failed one when its parameters cannot run,
tests.created_runs), a runner's claim (runners.claims) holds it, and the API's
cancel makes a held run Cancelling and an unheld one Cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from events.bus import Bus
from events.deployments import save_deployment
from events.records import Deployment, FlowRun
from flowbus.client import ApiError, ApiNotFound, FlowbusClient, get_client
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from runners.claims import claimed
from tests.created_runs import created_run
from tests.orchestrator.support import Running, start

KEY = "deploy-tests-admin-key-0123456789abcdef"


@pytest.fixture
async def api(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=KEY, wait_max_seconds=1)) as gw:
        monkeypatch.setenv("FLOWBUS_API_URL", gw.url + "/api/v1")
        monkeypatch.setenv("FLOWBUS_API_KEY", KEY)
        yield gw


@pytest.fixture
async def orchestrator(bus: Bus) -> AsyncIterator[Running]:
    started = await start(bus)
    try:
        yield started
    finally:
        await started.close()


async def scheduled_run(client: FlowbusClient, bus: Bus) -> str:
    """A run the orchestrator created on request (Scheduled: no runner takes it here)."""
    await save_deployment(bus, Deployment(name="hello", flow_name="greet"))
    run_id = str((await client.create_flow_run_from_deployment("hello"))["flow_run_id"])
    for _ in range(200):
        try:
            if (await client.read_flow_run(run_id)).state.name == "Scheduled":
                return run_id
        except ApiNotFound:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the orchestrator created no record for {run_id}")


async def test_a_scheduled_run_is_deleted_and_vanishes_from_the_list(
        api: RunningGateway, bus: Bus, orchestrator: Running) -> None:  # fmt: skip
    async with get_client() as client:
        run_id = await scheduled_run(client, bus)
        assert run_id in [r.id for r in await client.read_flow_runs()]
        await client.delete_flow_run(flow_run_id=run_id)
        with pytest.raises(ApiNotFound):
            await client.read_flow_run(run_id)
        assert run_id not in [r.id for r in await client.read_flow_runs()]
        assert await client.read_flow_runs(deployment="hello", limit=None) == []
        with pytest.raises(ApiNotFound, match=run_id):
            await client.delete_flow_run(run_id)


async def test_a_final_run_is_deleted(api: RunningGateway, bus: Bus, orchestrator: Running) -> None:
    await created_run(bus, "done-1", deployment="hello", refused="parameters do not fit")
    async with get_client() as client:
        assert [r.id for r in await client.read_flow_runs()] == ["done-1"]
        await client.delete_flow_run("done-1")
        assert await client.read_flow_runs() == []


async def test_a_scheduled_run_cancelled_is_cancelled_at_once_and_deletable(
        api: RunningGateway, bus: Bus, orchestrator: Running) -> None:  # fmt: skip
    async with get_client() as client:
        run_id = await scheduled_run(client, bus)
        # No runner holds it: Cancelled at once, as Prefect does.
        assert (await client.cancel_flow_run(run_id)).state.name == "Cancelled"
        await client.delete_flow_run(run_id)
        with pytest.raises(ApiNotFound):
            await client.read_flow_run(run_id)


async def test_a_claimed_or_cancelling_run_is_refused_until_final(
        api: RunningGateway, bus: Bus, orchestrator: Running) -> None:  # fmt: skip
    async with get_client() as client:
        run_id = await scheduled_run(client, bus)
        kv = await bus.kv(bus.layout.flow_runs)
        entry = await kv.get(run_id)
        assert entry is not None
        _, held = claimed(FlowRun.model_validate_json(entry.value), "runner-1", datetime.now(UTC))
        await kv.update(run_id, lambda _: held.model_dump_json().encode())
        with pytest.raises(ApiError, match=r"is Running; .* cancel it first") as refused:
            await client.delete_flow_run(run_id)
        assert refused.value.status == 409
        assert (await client.cancel_flow_run(run_id)).state.name == "Cancelling"
        with pytest.raises(ApiError, match=r"is Cancelling; .* cancel it first") as refused:
            await client.delete_flow_run(run_id)
        assert refused.value.status == 409
        assert (await client.read_flow_run(run_id)).state.name == "Cancelling"


@pytest.mark.parametrize("run_id", ["..", "%2e%2e", "a" * 5000, "a%00b", "x%2Fy", "$JS.API", "*", ">",
                                    "%F0%9F%92%A5", "a b"])
async def test_hostile_ids_are_404_never_5xx(api: RunningGateway, run_id: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        async with http.delete(f"{api.url}/api/v1/flow-runs/{run_id}") as r:
            assert r.status in (404, 414), await r.text()


async def test_deleting_needs_the_write_scope(api: RunningGateway, bus: Bus) -> None:
    await created_run(bus, "done-2", deployment="hello", refused="parameters do not fit")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as admin:
        async with admin.post(f"{api.url}/api/v1/api-keys", json={"name": "r", "scopes": ["read"]}) as r:
            read_key = (await r.json())["key"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {read_key}"}) as reader:
        async with reader.delete(f"{api.url}/api/v1/flow-runs/done-2") as r:
            assert r.status == 403
    async with get_client() as client:
        assert [r.id for r in await client.read_flow_runs()] == ["done-2"]
