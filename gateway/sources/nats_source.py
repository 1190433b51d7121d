"""NATS sources: core subjects in a queue group, and JetStream streams of other applications.

The CloudEvents NATS protocol binding is understood natively: structured mode (the
body is CloudEvents JSON) and binary mode (attributes in ``ce-*`` headers, data in
the body) both pass through as the events they are.
"""

from __future__ import annotations

import asyncio
import time

from events.errors import BusUnavailable
from events.remote import (
    RemoteAuthFailed,
    RemoteMessage,
    RemoteNats,
    RemoteNatsOptions,
    RemoteRefused,
)
from events.source_messages import SourceMessage
from events.sources import JetStreamSubscription, NatsSubscription, SourceSpec
from gateway.sources.secrets import resolve
from gateway.sources.settings import SourcesSettings
from gateway.sources.types import (
    NOOP,
    Connected,
    Deliver,
    Incoming,
    Lag,
    SourceAuthFailed,
    SourceUnavailable,
)

NATS_MSG_ID = "Nats-Msg-Id"
_POLL_SECONDS = 0.25


def _options(spec: SourceSpec, settings: SourcesSettings) -> RemoteNatsOptions:
    c = spec.connection
    servers = [c.url if c.scheme == "nats" else c.url.replace("tls://", "nats://", 1)]
    return RemoteNatsOptions(
        servers=servers, name=f"flowbus-source-{spec.name}", user=c.username,
        password=resolve(c.password, "connection.password", settings),
        token=resolve(c.token, "connection.token", settings),
        connect_timeout=c.connect_timeout, tls=c.scheme == "tls",
    )


async def _connect(spec: SourceSpec, settings: SourcesSettings) -> RemoteNats:
    try:
        return await RemoteNats.connect(_options(spec, settings))
    except RemoteAuthFailed as exc:
        raise SourceAuthFailed(str(exc)) from None
    except BusUnavailable as exc:
        raise SourceUnavailable(str(exc)) from None


def _message(msg: RemoteMessage, position: str | None) -> SourceMessage:
    return SourceMessage(body=msg.data, topic=msg.subject, headers=msg.headers,
                         message_id=msg.headers.get(NATS_MSG_ID) or None, position=position)


class NatsConnector:
    """Core NATS: at most once by nature (no persistence), shared by a queue group."""

    def __init__(self, spec: SourceSpec, settings: SourcesSettings, stopping: asyncio.Event) -> None:
        assert isinstance(spec.subscription, NatsSubscription)
        self.spec = spec
        self.sub = spec.subscription
        self.settings = settings
        self.stopping = stopping

    async def run(self, deliver: Deliver, connected: Connected) -> None:
        remote = await _connect(self.spec, self.settings)
        queue = self.sub.queue_group or f"flowbus-source-{self.spec.name}"
        try:
            async with remote.subscribe(self.sub.subject, queue=queue,
                                        limit=self.settings.queue_max) as sub:
                await connected()
                while not self.stopping.is_set():
                    try:
                        async with asyncio.timeout(_POLL_SECONDS):
                            first = await sub.next()
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    msgs = [first, *sub.drain_nowait(self.settings.batch_max - 1)]
                    await deliver([Incoming(_message(m, None), NOOP, NOOP, now) for m in msgs])
        except BusUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None
        except RemoteAuthFailed as exc:
            raise SourceAuthFailed(str(exc)) from None
        except RemoteRefused as exc:
            raise SourceUnavailable(str(exc)) from None
        finally:
            await remote.close()


class JetStreamConnector:
    """A durable pull consumer: ack after the event is stored, nak when storing failed."""

    def __init__(self, spec: SourceSpec, settings: SourcesSettings, stopping: asyncio.Event,
                 lag: Lag) -> None:
        assert isinstance(spec.subscription, JetStreamSubscription)
        self.spec = spec
        self.sub = spec.subscription
        self.settings = settings
        self.stopping = stopping
        self.lag = lag

    async def run(self, deliver: Deliver, connected: Connected) -> None:
        remote = await _connect(self.spec, self.settings)
        sub = self.sub
        try:
            consumer = await remote.consumer(
                sub.stream, sub.durable or f"flowbus-source-{self.spec.name}",
                filter_subject=sub.subject, deliver_new=sub.deliver == "new",
                ack_wait=sub.ack_wait_seconds, max_ack_pending=self.settings.queue_max,
            )
            await connected()
            size = max(1, min(self.settings.batch_max, self.settings.queue_max // 2))
            # The next batch is fetched while this one is stored: network and work overlap,
            # and at most two batches are unacknowledged (within max_ack_pending).
            ahead = asyncio.ensure_future(consumer.fetch(size, max_wait=_POLL_SECONDS))
            try:
                while not self.stopping.is_set():
                    msgs = await ahead
                    ahead = asyncio.ensure_future(consumer.fetch(size, max_wait=_POLL_SECONDS))
                    if msgs:
                        await deliver(self._batch(msgs))
                        if msgs[-1].num_pending is not None:
                            self.lag(msgs[-1].num_pending)
            finally:
                await _hand_back(ahead)
        except BusUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None
        except RemoteRefused as exc:
            raise SourceUnavailable(str(exc)) from None
        finally:
            await remote.close()

    def _batch(self, msgs: list[RemoteMessage]) -> list[Incoming]:
        now = time.monotonic()
        return [Incoming(_message(m, f"{self.sub.stream}:{m.stream_seq}"), m.ack, m.nak, now)
                for m in msgs]


async def _hand_back(fetch: asyncio.Future[list[RemoteMessage]]) -> None:
    """Nak what a fetch still in flight brought, so it is redelivered at once."""
    await asyncio.wait({fetch})
    if fetch.cancelled() or fetch.exception() is not None:
        return
    for m in fetch.result():
        await m.nak()
