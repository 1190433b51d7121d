"""AMQP 0-9-1 sources against a real RabbitMQ: queues, exchanges, ack after store, requeue."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from events.source_store import SourceStore

from .brokers import RabbitMQ
from .conftest import EventLog, spec, unique, wait_status


async def test_amqp_message_from_exchange_binding_becomes_mapped_event(
    rabbitmq: RabbitMQ, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    exchange = unique("shop")
    await store.create(spec(name="amqp-orders", kind="amqp",
                            connection={"url": rabbitmq.url},
                            subscription={"exchange": exchange, "binding_key": "order.*",
                                          "prefetch": 10},
                            mapping={"type": "shop.order.{{ body.status }}",
                                     "data": {"order": "{{ body.id }}"}}))
    async with start_sources():
        await wait_status(store, "amqp-orders", "connected", within=20)
        connection = await aio_pika.connect(rabbitmq.url)
        async with connection:
            channel = await connection.channel()
            ex = await channel.get_exchange(exchange)
            await ex.publish(aio_pika.Message(json.dumps({"id": 7, "status": "paid"}).encode(),
                                              message_id="order-7-paid",
                                              content_type="application/json"),
                             routing_key="order.eu")
            await ex.publish(aio_pika.Message(b'{"id": 8, "status": "x"}'),
                             routing_key="invoice.eu")
        [event] = await event_log.wait_for(1)
    assert event.type == "shop.order.paid"
    assert event.id == "order-7-paid"
    assert event.data == {"order": 7}


async def test_amqp_queue_is_acked_only_after_store(
    rabbitmq: RabbitMQ, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    queue_name = unique("q")
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        for i in range(30):
            await channel.default_exchange.publish(
                aio_pika.Message(json.dumps({"n": i}).encode(), message_id=f"m{i}"),
                routing_key=queue_name)
        await store.create(spec(name="amqp-q", kind="amqp", connection={"url": rabbitmq.url},
                                subscription={"queue": queue_name, "declare": False},
                                mapping={"type": "app.n", "data": "{{ body }}"}))
        async with start_sources():
            events = await event_log.wait_for(30, within=20)
        declared = await channel.declare_queue(queue_name, passive=True)
        assert declared.declaration_result.message_count == 0
        await queue.delete()
    assert sorted(e.data["n"] for e in events) == list(range(30))


async def test_amqp_wrong_credentials_give_a_clear_status(
    rabbitmq: RabbitMQ, store: SourceStore, start_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_SECRET_AMQP", "not-the-password")
    await store.create(spec(name="amqp-locked", kind="amqp",
                            connection={"url": rabbitmq.url, "username": "guest",
                                        "password": {"env": "SOURCE_SECRET_AMQP"}},
                            subscription={"queue": "never"}))
    async with start_sources():
        status = await wait_status(store, "amqp-locked", "error", within=20)
    assert status.reason is not None and status.reason.startswith("authentication failed")
    assert "not-the-password" not in status.reason


async def test_amqp_broker_restart_mid_stream_loses_and_duplicates_nothing(
    rabbitmq: RabbitMQ, store: SourceStore, start_sources, event_log: EventLog
) -> None:
    queue_name = unique("restart")

    async def publish(numbers: range) -> None:
        connection = await aio_pika.connect(rabbitmq.url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(queue_name, durable=True)
            for i in numbers:
                await channel.default_exchange.publish(
                    aio_pika.Message(json.dumps({"n": i}).encode(), message_id=f"r{i}",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue_name)

    await publish(range(0))
    await store.create(spec(name="amqp-restart", kind="amqp", connection={"url": rabbitmq.url},
                            subscription={"queue": queue_name, "prefetch": 5},
                            mapping={"type": "app.n", "data": "{{ body }}"}))
    async with start_sources():
        await wait_status(store, "amqp-restart", "connected", within=20)
        await publish(range(100))
        await asyncio.to_thread(rabbitmq.stop)
        await asyncio.to_thread(rabbitmq.start)
        await publish(range(100, 150))
        await event_log.wait_for(150, within=30)
        await asyncio.sleep(0.3)
        events = await event_log.refresh()
    assert sorted(e.data["n"] for e in events) == list(range(150))
