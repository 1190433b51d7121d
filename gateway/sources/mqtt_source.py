"""MQTT sources (v3.1.1 and v5, QoS 0/1, wildcards, ``$share/`` subscriptions) with aiomqtt.

QoS 1 messages are acknowledged (PUBACK) only after their event is stored: the client
runs with manual acks. The session is persistent (clean session off, a v5 session
expiry), so messages published while the source is paused or reconnecting wait at
the broker and arrive when it is back. The broker resends an unacknowledged message
with the same packet id, so the packet id (with the topic and payload) is the position
the event id derives from; a v5 user property ``message-id`` takes precedence.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from events.source_messages import SourceMessage
from events.sources import MqttSubscription, SourceSpec
from gateway.sources.secrets import resolve
from gateway.sources.settings import SourcesSettings
from gateway.sources.types import (
    NOOP,
    Connected,
    Deliver,
    Incoming,
    ReconnectNow,
    SourceAuthFailed,
    SourceUnavailable,
)

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
_POLL_SECONDS = 0.25
_ID_PROPERTIES = ("message-id", "message_id", "msg-id")
# Connack codes: v3 4/5 (bad credentials, not authorized), v5 134/135.
_AUTH_MARKERS = ("not authorized", "bad user name", "bad username", "code:4]", "code:5]",
                 "code:134]", "code:135]")


class _Inbox(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's bounded incoming queue, remembering when it had to drop a message.

    Some brokers send more unacknowledged messages than the Receive Maximum we asked
    for. A dropped QoS 1 message is never acknowledged, so the broker resends it on the
    next connection: the consumer reconnects when this happens, and nothing is lost.
    """

    overflowed = False

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if self.full():
            self.overflowed = True
        super().put_nowait(item)


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _AUTH_MARKERS)


def _headers(message: aiomqtt.Message) -> tuple[dict[str, str], dict[str, Any]]:
    """User properties as headers (CloudEvents binary mode as ``ce-*``), other properties."""
    headers: dict[str, str] = {}
    properties: dict[str, Any] = {"qos": message.qos, "retain": message.retain}
    props = message.properties
    if props is None:
        return headers, properties
    for name, value in getattr(props, "UserProperty", []) or []:
        headers[str(name)] = str(value)
    content_type = getattr(props, "ContentType", None)
    if content_type:
        headers["content-type"] = str(content_type)
    if "specversion" in headers:  # MQTT binding binary mode: attributes are user properties
        for name, value in list(headers.items()):
            if name != "content-type":
                headers[f"ce-{name}"] = value
    for name in ("ResponseTopic", "MessageExpiryInterval"):
        value = getattr(props, name, None)
        if value is not None:
            properties[name] = value
    return headers, properties


def _message(message: aiomqtt.Message) -> SourceMessage:
    headers, properties = _headers(message)
    message_id = next((headers[n] for n in _ID_PROPERTIES if headers.get(n)), None)
    payload = message.payload
    body = payload if isinstance(payload, bytes) else str(payload).encode()
    position = None if message.qos == 0 else f"mqtt:{message.mid}"
    return SourceMessage(body=bytes(body), topic=message.topic.value, headers=headers,
                         message_id=message_id, position=position, properties=properties)


class MqttConnector:
    """One MQTT client session subscribed to the source's filters."""

    def __init__(self, spec: SourceSpec, settings: SourcesSettings, stopping: asyncio.Event) -> None:
        assert isinstance(spec.subscription, MqttSubscription)
        self.spec = spec
        self.sub = spec.subscription
        self.settings = settings
        self.stopping = stopping

    def client_id(self) -> str:
        if self.spec.connection.client_id:
            base = self.spec.connection.client_id
        else:
            base = f"flowbus-{self.spec.name}"
        if self.sub.shared:  # each gateway its own session in the shared group
            suffix = hashlib.blake2b(self.settings.gateway_id.encode(), digest_size=4).hexdigest()
            return f"{base[:50]}-{suffix}"
        return base

    def client(self) -> aiomqtt.Client:
        c = self.spec.connection
        v5 = self.sub.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
            # The broker keeps at most this many unacknowledged messages in flight to us;
            # well below the client queue, which must never overflow (it would drop).
            properties.ReceiveMaximum = max(1, min(self.settings.queue_max // 2, 65535))
        client = aiomqtt.Client(
            hostname=c.host, port=c.port(8883 if c.scheme == "mqtts" else 1883),
            username=c.username, password=resolve(c.password, "connection.password", self.settings),
            identifier=self.client_id(),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties, timeout=c.connect_timeout,
            max_queued_incoming_messages=self.settings.queue_max, queue_type=_Inbox,
            tls_context=ssl.create_default_context() if c.scheme == "mqtts" else None,
        )
        # PUBACK only after the event is stored (paho acks on receipt otherwise).
        client._client.manual_ack_set(True)
        return client

    async def run(self, deliver: Deliver, connected: Connected) -> None:
        client = self.client()
        try:
            async with client:
                topics: list[tuple[str, int]] = [(t, self.sub.qos) for t in self.sub.topics]
                await client.subscribe(topics)
                await connected()
                await self._consume(client, deliver)
        except aiomqtt.MqttError as exc:
            if _is_auth_error(exc):
                raise SourceAuthFailed(f"the MQTT broker refused the credentials ({exc})") from None
            raise SourceUnavailable(f"MQTT broker {self.spec.connection.host}: {exc}") from None

    async def _consume(self, client: aiomqtt.Client, deliver: Deliver) -> None:
        messages = client.messages
        paho = client._client

        def acker(mid: int, qos: int) -> Any:
            async def ack() -> None:
                if qos > 0:
                    paho.ack(mid, qos)
            return ack

        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(_POLL_SECONDS):
                    first = await anext(messages)
            except TimeoutError:
                continue
            batch = [first]
            while len(messages) and len(batch) < self.settings.batch_max:
                batch.append(await anext(messages))
            now = time.monotonic()
            await deliver([Incoming(_message(m), acker(m.mid, m.qos), NOOP, now) for m in batch])
            inbox = client._queue
            if isinstance(inbox, _Inbox) and inbox.overflowed:
                raise ReconnectNow(
                    "the MQTT broker sent more unacknowledged messages than the receive "
                    f"maximum ({self.settings.queue_max}); reconnecting so it resends them")
