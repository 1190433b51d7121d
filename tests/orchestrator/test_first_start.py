"""Events the gateway accepts before any orchestrator has ever started are not lost.

The trigger consumer is created with the events stream, so it starts at the stream's
first event; a consumer created later (a renamed or deleted one) starts at new events
and never replays retained ones as new runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nats.js import api

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.layout import ORCHESTRATOR_CONSUMER
from events.settings import NatsSettings
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.orchestrator.support import deploy, fast_settings, flow_runs, start, wait_for_runs
from tests.shutdown import stop_process

ADMIN_KEY = "admin-key-for-first-start-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, admin_api_key=ADMIN_KEY)) as gw:
        yield gw


async def post_event(gateway: RunningGateway, event_type: str, event_id: str) -> None:
    body = {"specversion": "1.0", "id": event_id, "source": "/outside", "type": event_type}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as s:
        async with s.post(f"{gateway.url}/events", data=json.dumps(body),
                          headers={"Content-Type": "application/cloudevents+json"}) as r:
            assert r.status == 202, await r.text()


async def test_the_trigger_consumer_exists_from_the_streams_creation(bus: Bus) -> None:
    info = await bus._js.consumer_info(bus.layout.events_stream, ORCHESTRATOR_CONSUMER)
    assert info.config.deliver_policy == api.DeliverPolicy.ALL
    assert info.config.filter_subject == f"{bus.layout.events_prefix}.>"


async def test_an_event_accepted_before_the_first_orchestrator_starts_a_run(
    bus: Bus, gateway: RunningGateway
) -> None:
    await deploy(bus, "early", triggers=[{"expect": ["order.placed"]}])
    await post_event(gateway, "order.placed", "before-any-orchestrator")
    running_orch = await start(bus)
    try:
        runs = await wait_for_runs(bus, 1, within=30)
    finally:
        await running_orch.close()
    assert [r.deployment_name for r in runs] == ["early"]
    assert (runs[0].triggering_event or {}).get("id") == "before-any-orchestrator"
    # A restart continues where the durable stopped: the event is not taken again.
    await post_event(gateway, "order.placed", "after-the-restart")
    running_orch = await start(bus)
    try:
        runs = await wait_for_runs(bus, 2, within=30)
    finally:
        await running_orch.close()
    assert len(runs) == 2


async def test_a_consumer_created_on_a_stream_with_history_starts_at_new_events(
    bus: Bus, gateway: RunningGateway
) -> None:
    await deploy(bus, "late", triggers=[{"expect": ["order.placed"]}])
    await bus._js.delete_consumer(bus.layout.events_stream, ORCHESTRATOR_CONSUMER)
    await bus.publish(CloudEvent.create("unrelated.thing", source="/s"))
    await post_event(gateway, "order.placed", "retained-before-the-consumer")
    running_orch = await start(bus, fast_settings(consumer_name="renamed"))
    try:
        await post_event(gateway, "order.placed", "new-after-the-consumer")
        runs = await wait_for_runs(bus, 1, within=30)
    finally:
        await running_orch.close()
    # Events are handled in order: had the retained one been delivered, its run would
    # exist before the new one's.
    assert [(r.triggering_event or {}).get("id") for r in runs] == ["new-after-the-consumer"]
    assert len(await flow_runs(bus)) == 1


async def _flowbus(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from flowbus.cli import main; main()", *args,
        env={**env, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )


async def test_as_processes_on_a_namespace_nothing_has_created_yet(
    flowbus_env: dict[str, str], nats_settings: NatsSettings
) -> None:
    """The shape of a first deployment: a gateway process creates the layout, takes a
    deployment and an event; the first orchestrator process starts only then."""
    env = {**flowbus_env, "FLOWBUS_GATEWAY_ADMIN_API_KEY": ADMIN_KEY}
    gateway = await _flowbus(env, "gateway", "--port", "0")
    orchestrator: asyncio.subprocess.Process | None = None
    try:
        assert gateway.stdout is not None
        url = ""
        async with asyncio.timeout(60):
            while not url:
                line = (await gateway.stdout.readline()).decode()
                assert line, "the gateway exited before listening"
                if "gateway listening on" in line:
                    url = line.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            spec = {"name": "first", "flow_name": "f", "triggers": [{"expect": ["order.placed"]}]}
            async with http.post("/api/v1/deployments", json=spec) as r:
                assert r.status == 201, await r.text()
            body = {"specversion": "1.0", "id": "before-any-orchestrator", "source": "/outside",
                    "type": "order.placed"}
            async with http.post("/events", data=json.dumps(body),
                                 headers={"Content-Type": "application/cloudevents+json"}) as r:
                assert r.status == 202, await r.text()
            orchestrator = await _flowbus(env, "orchestrator")
            items: list[dict[str, object]] = []
            for _ in range(600):  # generous: two processes start on a shared machine
                async with http.get("/api/v1/flow-runs") as r:
                    assert r.status == 200, await r.text()
                    items = (await r.json())["items"]
                if items:
                    break
                assert orchestrator.returncode is None, "the orchestrator exited"
                await asyncio.sleep(0.1)
            assert [i["deployment_name"] for i in items] == ["first"]
            triggering = items[0]["triggering_event"]
            assert isinstance(triggering, dict) and triggering["id"] == "before-any-orchestrator"
    finally:
        for process, what in ((orchestrator, "the orchestrator"), (gateway, "the gateway")):
            if process is not None:
                await stop_process(process, what=what)
        async with await Bus.connect(nats_settings) as cleanup:
            await cleanup.destroy_layout()
