"""Finding 2: outside events cannot drive the control plane.

``flowbus.*`` types are refused at every outside door (``/events`` in each mode,
webhooks with their templates and CloudEvent pass-through, sources), and the
orchestrator ignores a control event that was not published on its own subject.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import aiohttp
import nats
import pytest

from events.bus import Bus
from events.deployments import get_flow_run
from events.embedded import EmbeddedNats
from events.runs import RUN_REQUESTED
from events.source_store import SourceStore
from events.sources import SourceSpec
from events.subjects import event_subject
from gateway.service import RunningGateway
from tests.security.conftest import KeyMaker, poll
from tests.stored import stored_types

CE = "application/cloudevents+json"
FORGED = {"specversion": "1.0", "id": "f-1", "source": "/attacker", "type": RUN_REQUESTED,
          "data": {"deployment": "greet", "flow_run_id": "forged", "parameters": {}}}


def _rejected(metrics: str) -> float:
    match = re.search(r'flowbus_gateway_events_rejected_total\{reason="reserved_type"\} (\S+)',
                      metrics)
    return float(match.group(1)) if match else 0.0


async def _stored(bus: Bus) -> list[str]:
    return await stored_types(bus)


async def test_events_endpoint_refuses_reserved_types_in_every_mode(
    client_with: KeyMaker, gateway: RunningGateway, bus: Bus
) -> None:
    ingest = await client_with("ingest")
    async with ingest.post("/events", json=FORGED, headers={"Content-Type": CE}) as r:
        body = await r.json()
        assert r.status == 403 and "reserved 'flowbus.' namespace" in body["detail"], body
    batch = [{**FORGED, "type": "com.example.fine", "id": "ok"},
             {**FORGED, "type": "flowbus.flow-run.Completed", "id": "f-2"}]
    async with ingest.post("/events", data=json.dumps(batch),
                           headers={"Content-Type": "application/cloudevents-batch+json"}) as r:
        body = await r.json()
        assert r.status == 403 and body["index"] == 1 and "event [1]" in body["detail"]
    binary = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/x",
              "ce-type": "flowbus.automation.triggered", "Content-Type": "application/json"}
    async with ingest.post("/events", data=b"{}", headers=binary) as r:
        assert r.status == 403
    assert await _stored(bus) == []
    async with aiohttp.ClientSession() as plain, plain.get(f"{gateway.url}/metrics") as r:
        assert _rejected(await r.text()) == 3


async def test_webhooks_refuse_reserved_types_from_templates_and_pass_through(
    admin: aiohttp.ClientSession, gateway: RunningGateway, bus: Bus
) -> None:
    hook = {"slug": "open", "verifier": "none",
            "template": {"type": "{{ body.kind }}", "data": "{{ body }}"}}
    async with admin.post("/api/v1/webhooks", json=hook) as r:
        assert r.status == 201, await r.text()
    fixed = {"slug": "fixed", "verifier": "none", "template": {"type": RUN_REQUESTED}}
    async with admin.post("/api/v1/webhooks", json=fixed) as r:
        assert r.status == 400 and "reserved" in (await r.json())["detail"]
    async with aiohttp.ClientSession(base_url=gateway.url) as outside:
        async with outside.post("/hooks/open", json={"kind": "flowbus.flow-run.Completed"}) as r:
            assert r.status == 403 and "reserved" in (await r.json())["detail"]
        async with outside.post("/hooks/open", data=json.dumps(FORGED),
                                headers={"Content-Type": CE}) as r:
            assert r.status == 403
        async with outside.post("/hooks/open", json={"kind": "com.example.ok"}) as r:
            assert r.status == 202, await r.text()
    assert await _stored(bus) == ["com.example.ok"]


async def test_a_source_dead_letters_a_reserved_type(
    bus: Bus, other_nats: EmbeddedNats
) -> None:
    from gateway.sources.manager import run_sources
    from gateway.sources.settings import SourcesSettings

    store = await SourceStore.open(bus)
    subject = f"shop{uuid.uuid4().hex[:8]}"
    await store.create(SourceSpec.model_validate({
        "name": "pass", "kind": "nats", "connection": {"url": other_nats.url},
        "subscription": {"subject": subject}, "passthrough": True}))
    stop, ready = asyncio.Event(), asyncio.Event()
    settings = SourcesSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.5,
                               gateway_id="gw-test")
    task = asyncio.ensure_future(run_sources(bus, settings, stop, ready=ready))
    try:
        async with asyncio.timeout(20):
            await ready.wait()

            async def connected() -> bool:
                return getattr(await store.status("pass"), "state", None) == "connected"

            await poll(connected, what="the source to connect")
            nc = await nats.connect(other_nats.url)
            await nc.publish(subject, json.dumps(FORGED).encode(),
                             headers={"Content-Type": CE})
            await nc.flush()
            await nc.close()
            await poll(lambda: store.dead_letter_keys("pass"), what="a dead letter")
    finally:
        stop.set()
        await task
    [letter] = await store.dead_letter_list("pass")
    assert "reserved 'flowbus.' namespace" in letter.reason
    assert await _stored(bus) == []


@pytest.mark.usefixtures("plane")
async def test_the_orchestrator_ignores_control_events_off_their_own_subject(
    admin: aiohttp.ClientSession, bus: Bus
) -> None:
    async with admin.post("/api/v1/deployments", json={
            "name": "greet", "flow_name": "greet", "entrypoint": "flows.py:greet"}) as r:
        assert r.status == 201
    # Whoever can publish on an ordinary events subject writes a run request there.
    body = json.dumps(FORGED).encode()
    await bus.publish_raw(event_subject(bus.layout.namespace, "com.example.order"), body,
                          {"Nats-Msg-Id": "forged"})
    async with admin.post("/api/v1/deployments/greet/runs") as r:
        real: dict[str, Any] = await r.json()
        assert r.status == 202
    await poll(lambda: get_flow_run(bus, real["flow_run_id"]), what="the real run")
    assert await get_flow_run(bus, "forged") is None


# The other application's nats-server of the source test.
@pytest.fixture(scope="module")
def other_nats(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with EmbeddedNats(tmp_path_factory.mktemp("other-nats")) as server:
        yield server
