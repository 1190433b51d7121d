"""Sources inside the gateway service: metrics on /metrics, one MQTT session per lease."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import nats
from prometheus_client import CollectorRegistry

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.settings import NatsSettings
from events.source_store import SourceStore
from gateway.service import serve
from gateway.settings import GatewaySettings
from gateway.sources.manager import run_sources
from gateway.sources.settings import SourcesSettings
from tests.shutdown import stop_service

from .brokers import Mosquitto
from .conftest import EventLog, spec, unique, wait_status, wait_until


async def test_gateway_service_runs_sources_and_exposes_their_metrics(
    nats_settings: NatsSettings, bus: Bus, other_nats: EmbeddedNats, store: SourceStore,
    event_log: EventLog, sources_settings: SourcesSettings
) -> None:
    subject = unique("metrics")
    stop, ready = asyncio.Event(), asyncio.Event()
    urls: list[str] = []
    service = asyncio.ensure_future(serve(
        nats_settings, GatewaySettings(port=0, auth=False), ready=ready, stop=stop,
        announce=urls.append, sources_settings=sources_settings))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with aiohttp.ClientSession(base_url=urls[0]) as http:
            created = await http.post("/api/v1/sources", json={
                "name": "metered", "kind": "nats", "connection": {"url": other_nats.url},
                "subscription": {"subject": f"{subject}.>"},
                "mapping": {"type": "metered.{{ body.kind }}", "data": "{{ body }}"}})
            assert created.status == 201
            await wait_status(store, "metered", "connected")
            nc = await nats.connect(other_nats.url)
            await nc.publish(f"{subject}.a", json.dumps({"kind": "ok"}).encode())
            await nc.publish(f"{subject}.a", b"not json", headers={"content-type":
                                                                   "application/json"})
            await nc.flush()
            await nc.close()
            await event_log.wait_for(1)
            await wait_until(lambda: store.dead_letter_list("metered"), what="a dead letter")
            metrics = await (await http.get("/metrics")).text()
    finally:
        await stop_service(stop, service, what="the gateway with its sources")
    assert 'flowbus_source_messages_in_total{source="metered"} 2.0' in metrics
    assert 'flowbus_source_events_out_total{source="metered"} 1.0' in metrics
    assert 'flowbus_source_mapping_failures_total{source="metered"} 1.0' in metrics
    assert 'flowbus_source_connected{source="metered"} 1.0' in metrics


def _connected(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value("flowbus_source_connected", {"source": name}) or 0.0


async def test_mqtt_source_without_shared_subscription_runs_on_one_gateway_at_a_time(
    bus: Bus, mosquitto: Mosquitto, store: SourceStore, sources_settings: SourcesSettings
) -> None:
    await store.create(spec(name="single", kind="mqtt", connection={"url": mosquitto.url},
                            subscription={"topics": [f"{unique('one')}/#"]}))
    registries = [CollectorRegistry(), CollectorRegistry()]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.ensure_future(run_sources(
        bus, sources_settings.model_copy(update={"gateway_id": f"gw-{i}"}), stops[i],
        registry=registries[i])) for i in range(2)]
    try:
        await wait_status(store, "single", "connected")
        await asyncio.sleep(0.5)
        assert sum(_connected(r, "single") for r in registries) == 1.0
        holder = 0 if _connected(registries[0], "single") else 1
        stops[holder].set()
        await tasks[holder]
        other = 1 - holder

        async def taken_over() -> bool:
            return _connected(registries[other], "single") == 1.0

        await wait_until(taken_over, within=20, what="the standby gateway to take over")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
