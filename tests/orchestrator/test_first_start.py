"""Events the gateway accepts before any orchestrator has ever started are not lost.

The trigger consumer is created with the events stream, so it starts at the stream's
first event; a consumer created later (a renamed or deleted one) starts at new events
and never replays retained ones as new runs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.js import api

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.layout import ORCHESTRATOR_CONSUMER
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from tests.orchestrator.support import deploy, fast_settings, flow_runs, start, wait_for_runs

ADMIN_KEY = "admin-key-for-first-start-0123456789"


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
