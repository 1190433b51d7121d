"""A message on each kind of source starts a flow run with parameters from the message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiomqtt
import nats
import pytest

from events.bus import Bus
from events.embedded import EmbeddedNats
from events.records import Deployment, FlowRun
from events.source_store import SourceStore
from orchestrator.service import Orchestrator
from orchestrator.settings import OrchestratorSettings

from .brokers import Mosquitto, RabbitMQ
from .conftest import spec, unique, wait_status, wait_until

Publish = Callable[[bytes], Awaitable[None]]


@pytest.fixture
async def orchestrator(bus: Bus) -> AsyncIterator[Orchestrator]:
    orch = Orchestrator(bus, OrchestratorSettings(fetch_wait_seconds=0.1, tick_seconds=3600,
                                                  drain_seconds=2))
    stop = asyncio.Event()
    task = asyncio.create_task(orch.run(stop))
    await asyncio.wait_for(orch.consuming.wait(), 15)
    yield orch
    stop.set()
    await asyncio.wait_for(task, 15)


async def _runs(bus: Bus) -> list[FlowRun]:
    kv = await bus.kv(bus.layout.flow_runs)
    runs = []
    for key in await kv.keys():
        entry = await kv.get(key)
        if entry is not None:
            runs.append(FlowRun.model_validate_json(entry.value))
    return runs


async def _nats(other_nats: EmbeddedNats, **_: Any) -> tuple[dict[str, Any], Publish]:
    subject = unique("orders.")

    async def publish(body: bytes) -> None:
        nc = await nats.connect(other_nats.url)
        await nc.publish(f"{subject}.new", body)
        await nc.flush()
        await nc.close()

    return {"kind": "nats", "connection": {"url": other_nats.url},
            "subscription": {"subject": f"{subject}.*"}}, publish


async def _jetstream(other_nats: EmbeddedNats, **_: Any) -> tuple[dict[str, Any], Publish]:
    stream = unique("ORD")
    nc = await nats.connect(other_nats.url)
    await nc.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
    await nc.close()

    async def publish(body: bytes) -> None:
        nc = await nats.connect(other_nats.url)
        await nc.jetstream().publish(f"{stream}.new", body)
        await nc.close()

    return {"kind": "nats-jetstream", "connection": {"url": other_nats.url},
            "subscription": {"stream": stream}}, publish


async def _mqtt(mosquitto: Mosquitto, **_: Any) -> tuple[dict[str, Any], Publish]:
    topic = unique("orders")

    async def publish(body: bytes) -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=unique("p")) as c:
            await c.publish(f"{topic}/new", body, qos=1)

    return {"kind": "mqtt", "connection": {"url": mosquitto.url},
            "subscription": {"topics": [f"{topic}/+"]}}, publish


async def _amqp(rabbitmq: RabbitMQ, **_: Any) -> tuple[dict[str, Any], Publish]:
    exchange = unique("orders")

    async def publish(body: bytes) -> None:
        connection = await aio_pika.connect(rabbitmq.url)
        async with connection:
            channel = await connection.channel()
            ex = await channel.get_exchange(exchange)
            await ex.publish(aio_pika.Message(body, message_id=unique("m")), routing_key="new")

    return {"kind": "amqp", "connection": {"url": rabbitmq.url},
            "subscription": {"exchange": exchange, "binding_key": "new"}}, publish


KINDS = {"nats": (_nats, "other_nats"), "nats-jetstream": (_jetstream, "other_nats"),
         "mqtt": (_mqtt, "mosquitto"), "amqp": (_amqp, "rabbitmq")}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_message_on_each_kind_starts_a_flow_run_with_parameters_from_it(
    kind: str, request: pytest.FixtureRequest, bus: Bus, store: SourceStore, start_sources,
    orchestrator: Orchestrator
) -> None:
    make, broker_fixture = KINDS[kind]
    broker = request.getfixturevalue(broker_fixture)
    source, publish = await make(**{broker_fixture: broker})
    deployment = Deployment(name="fulfil", flow_name="fulfil-order", parameters={"qty": 1},
                            triggers=[{"expect": ["shop.order.created"],
                                       "parameters": {"order": "{{ event.data.order }}",
                                                      "qty": "{{ event.data.qty }}"}}])
    kv = await bus.kv(bus.layout.deployments)
    await kv.put(deployment.name, deployment.model_dump_json().encode())
    await store.create(spec(name="orders", **source,
                            mapping={"type": "shop.order.created", "data": "{{ body }}"}))
    async with start_sources():
        await wait_status(store, "orders", "connected", within=20)
        await publish(json.dumps({"order": "A-17", "qty": 4}).encode())
        [run] = await wait_until(lambda: _runs(bus), within=15, what="a flow run")
    assert run.parameters == {"order": "A-17", "qty": 4}
    assert run.deployment_id is not None
