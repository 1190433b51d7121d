"""AMQP 0-9-1 sources (RabbitMQ) with aio-pika: a queue, or an exchange and a binding key.

Messages are acknowledged after their event is stored and rejected with requeue when
storing failed; ``prefetch`` bounds what the broker sends ahead. The publisher's
``message_id`` is the event id; without one, the id is a hash of the body, routing key,
timestamp and correlation id, so a requeued message is stored once (identical messages
without ids within the dedup window are stored once too: give them message ids).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from events.source_messages import SourceMessage
from events.sources import AmqpSubscription, SourceSpec
from gateway.sources.secrets import resolve
from gateway.sources.settings import SourcesSettings
from gateway.sources.types import (
    Connected,
    Deliver,
    Incoming,
    Lag,
    SourceAuthFailed,
    SourceUnavailable,
)

_POLL_SECONDS = 0.25
_CE_PREFIXES = ("cloudEvents:", "cloudEvents_")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _message(msg: AbstractIncomingMessage) -> SourceMessage:
    headers: dict[str, str] = {}
    for name, value in (msg.headers or {}).items():
        for prefix in _CE_PREFIXES:  # AMQP binding binary mode
            if name.startswith(prefix):
                name = "ce-" + name[len(prefix):]
        headers[name] = _text(value)
    if msg.content_type:
        headers["content-type"] = msg.content_type
    position = None
    if not msg.message_id:
        stamp = msg.timestamp.isoformat() if msg.timestamp else ""
        position = f"amqp:{msg.exchange}:{msg.routing_key}:{stamp}:{msg.correlation_id or ''}"
    properties = {"exchange": msg.exchange, "routing_key": msg.routing_key,
                  "redelivered": msg.redelivered, "correlation_id": msg.correlation_id,
                  "app_id": msg.app_id, "type": msg.type}
    return SourceMessage(body=msg.body, topic=msg.routing_key or "", headers=headers,
                         message_id=msg.message_id or None, position=position,
                         properties={k: v for k, v in properties.items() if v is not None})


class AmqpConnector:
    """One connection and channel consuming the source's queue."""

    def __init__(self, spec: SourceSpec, settings: SourcesSettings, stopping: asyncio.Event,
                 lag: Lag) -> None:
        assert isinstance(spec.subscription, AmqpSubscription)
        self.spec = spec
        self.sub = spec.subscription
        self.settings = settings
        self.stopping = stopping
        self.lag = lag

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        c = self.spec.connection
        vhost = unquote(urlsplit(c.url).path[1:]) or "/"
        try:
            return await aio_pika.connect(
                host=c.host, port=c.port(5671 if c.scheme == "amqps" else 5672),
                login=c.username or "guest",
                password=resolve(c.password, "connection.password", self.settings) or "guest",
                virtualhost=vhost, timeout=c.connect_timeout,
                ssl=c.scheme == "amqps",
                ssl_context=ssl.create_default_context() if c.scheme == "amqps" else None,
                client_properties={"connection_name": f"flowbus-source-{self.spec.name}"},
            )
        except (aiormq.exceptions.ProbableAuthenticationError,
                aiormq.exceptions.AuthenticationError) as exc:
            raise SourceAuthFailed(f"the AMQP broker refused the credentials ({exc})") from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            text = str(exc)
            if "ACCESS_REFUSED" in text:
                raise SourceAuthFailed(f"the AMQP broker refused the credentials ({text})") from None
            raise SourceUnavailable(f"cannot reach AMQP broker {c.host}: "
                                    f"{text or type(exc).__name__}") from None

    async def run(self, deliver: Deliver, connected: Connected) -> None:
        connection = await self._connect()
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.sub.prefetch)
            queue = await self._queue(channel)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue(self.sub.prefetch + 1)
            tag = await queue.consume(inbox.put)
            await connected()
            await self._consume(inbox, closed, deliver, queue)
            await queue.cancel(tag)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise SourceUnavailable(f"AMQP: {exc}") from None
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(f"AMQP broker {self.spec.connection.host}: "
                                    f"{exc or type(exc).__name__}") from None
        finally:
            if not connection.is_closed:
                await connection.close()

    async def _queue(self, channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
        sub = self.sub
        name = sub.queue or f"flowbus.source.{self.spec.name}"
        if sub.declare:
            queue = await channel.declare_queue(name, durable=True)
        else:
            queue = await channel.declare_queue(name, passive=True)
        if queue.declaration_result.message_count is not None:
            self.lag(queue.declaration_result.message_count)
        if sub.exchange:
            if sub.declare:
                exchange = await channel.declare_exchange(
                    sub.exchange, aio_pika.ExchangeType(sub.exchange_type), durable=True)
            else:
                exchange = await channel.get_exchange(sub.exchange, ensure=True)
            await queue.bind(exchange, routing_key=sub.binding_key)
        return queue

    async def _consume(self, inbox: asyncio.Queue[AbstractIncomingMessage], closed: asyncio.Event,
                       deliver: Deliver, queue: aio_pika.abc.AbstractQueue) -> None:
        while not self.stopping.is_set():
            if closed.is_set():
                raise SourceUnavailable("the AMQP broker closed the connection")
            try:
                async with asyncio.timeout(_POLL_SECONDS):
                    first = await inbox.get()
            except TimeoutError:
                continue
            batch = [first]
            while not inbox.empty() and len(batch) < self.settings.batch_max:
                batch.append(inbox.get_nowait())
            now = time.monotonic()
            await deliver([Incoming(_message(m), m.ack, _requeue(m), now) for m in batch])


def _requeue(msg: AbstractIncomingMessage) -> Any:
    async def nack() -> None:
        await msg.nack(requeue=True)
    return nack
