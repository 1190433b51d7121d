"""The bus: the only place in flowbus that talks to nats-py.

Everything else publishes events, consumes jobs and reads KV through :class:`Bus`::

    async with await Bus.connect(NatsSettings()) as bus:
        await bus.publish(CloudEvent.create("com.example.hello", source="/me"))

Every failure is a :class:`~events.errors.FlowbusError` that says what failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from events import subjects, tailing
from events.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent, encode
from events.consumer import Consumer, Delivery
from events.errors import BusUnavailable, FlowbusError, PublishFailed
from events.kv import KV, Objects
from events.layout import Layout, all_streams, delete_layout, ensure_layout
from events.settings import NatsSettings

__all__ = ["Ack", "Bus", "Consumer", "Delivery", "msg_id", "redact"]

log = logging.getLogger("flowbus.events.bus")

MSG_ID_HEADER = "Nats-Msg-Id"


def msg_id(event: CloudEvent) -> str:
    """The ``Nats-Msg-Id`` of an event: derived from its identity (source, id)."""
    return hashlib.blake2b(f"{event.source}\x1f{event.id}".encode(), digest_size=16).hexdigest()


def redact(url: str) -> str:
    """A URL with any password or token replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream's acknowledgement of one stored message."""

    stream: str
    seq: int
    duplicate: bool


class Bus:
    """A connection to NATS with the flowbus layout in place."""

    def __init__(self, nc: NatsClient, settings: NatsSettings, layout: Layout) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=settings.nats_request_timeout)
        self.settings = settings
        self.layout = layout
        self._closing = False
        self._replies: str | None = None
        self._windows: dict[str, _Window] = {}
        self._window_ids = itertools.count()
        # Bound buckets: binding asks JetStream for the stream's info (a round trip),
        # so each bucket is bound once per connection, not once per use.
        self._bound: dict[tuple[str, str], KV | Objects] = {}

    # --- connection ---------------------------------------------------------------

    @classmethod
    async def connect(
        cls, settings: NatsSettings | None = None, *, ensure: bool = True, name: str = "flowbus"
    ) -> Bus:
        """Connect, and create the layout unless ``ensure`` is False.

        Raises :class:`BusUnavailable` naming the servers when none answers.
        """
        settings = settings or NatsSettings()
        servers = ", ".join(redact(u) for u in settings.nats_url)
        closing: list[Bus] = []  # set once our own close() begins

        async def on_disconnect() -> None:
            if not (closing and closing[0]._closing):
                log.warning("disconnected from NATS (%s); reconnecting", servers)

        async def on_reconnect() -> None:
            log.warning("reconnected to NATS (%s)", servers)

        async def on_error(exc: Exception) -> None:
            if closing:  # before that, a failed connect is reported once, by us
                log.warning("NATS connection error (%s): %s", servers, exc)

        options = _connect_options(settings, name, on_disconnect, on_reconnect, on_error)
        try:
            nc = await asyncio.wait_for(
                nats.connect(**options),
                timeout=settings.nats_connect_timeout * (len(settings.nats_url) + 1) + 1,
            )
        except (NoServersError, OSError, TimeoutError, NatsTimeout):
            raise BusUnavailable(
                f"cannot reach NATS at {servers}: no server answered; is nats-server "
                "running there (FLOWBUS_NATS_URL)?"
            ) from None
        except nats.errors.Error as exc:
            raise BusUnavailable(f"NATS at {servers} refused the connection: {exc}") from None
        nc.options["max_reconnect_attempts"] = -1
        layout = Layout(settings.namespace)
        bus = cls(nc, settings, layout)
        closing.append(bus)
        if ensure:
            try:
                await ensure_layout(bus._js, settings)
            except (NatsTimeout, NoRespondersError, NoStreamResponseError) as exc:
                await nc.close()
                raise BusUnavailable(
                    f"NATS at {servers} did not answer JetStream requests ({type(exc).__name__}); "
                    "is JetStream enabled (nats-server -js)?"
                ) from None
            except BaseException:
                await nc.close()
                raise
        return bus

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def close(self) -> None:
        """Flush what was published and close the connection.

        Every publish that matters was already acknowledged, so this flushes and
        closes rather than draining, which would wait on pending pull requests.
        """
        if self._nc.is_closed:
            return
        self._closing = True
        try:
            if self._nc.is_connected:
                await self._nc.flush(timeout=2)
        except (NatsTimeout, TimeoutError, ConnectionClosedError, OSError):
            pass
        try:
            await self._nc.close()
        except OSError as exc:  # the server already went away: nothing left to flush
            log.debug("closing a dead NATS connection: %s", exc)

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- publishing ---------------------------------------------------------------

    def encode(self, event: CloudEvent) -> bytes:
        """Encode ``event`` within the size limit (raises InvalidEvent / EventTooLarge)."""
        return encode(event, self.settings.event_max_bytes)

    async def publish(self, event: CloudEvent) -> Ack:
        """Publish one event and wait for JetStream to store it.

        A re-publish of the same (source, id) within the dedup window is stored once
        (``Ack.duplicate`` is then True).
        """
        return await self.publish_raw(*self.event_message(event))

    def event_message(self, event: CloudEvent) -> tuple[str, bytes, dict[str, str] | None]:
        """(subject, body, headers) of ``event``, for :meth:`publish_raw_many` with others."""
        return (
            subjects.event_subject(self.layout.namespace, event.type),
            self.encode(event),
            {MSG_ID_HEADER: msg_id(event), "Content-Type": STRUCTURED_CONTENT_TYPE},
        )

    async def publish_many(self, events: Sequence[CloudEvent]) -> list[Ack]:
        """Publish events pipelined, at most ``publish_max_in_flight`` unacknowledged.

        All events are encoded first, so a bad one publishes none. If NATS fails
        part-way the error is raised; publishing the same events again is safe,
        since their message ids deduplicate what was already stored.
        """
        return await self.publish_raw_many([self.event_message(e) for e in events])

    async def publish_raw(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> Ack:
        """Publish bytes to a JetStream subject and await the ack.

        It goes out as a window of one on the shared reply subscription: no inbox,
        timer task or reply parsing of nats-py's per-request path.
        """
        try:
            [ack] = await self._publish_window([(subject, body, headers)])
        except (NatsTimeout, TimeoutError, NoRespondersError, ConnectionClosedError) as exc:
            raise BusUnavailable(
                f"JetStream did not acknowledge the message on {subject!r} "
                f"({type(exc).__name__}); NATS is unreachable or overloaded"
            ) from None
        except PublishFailed as exc:
            raise PublishFailed(f"{exc} (subject {subject!r})") from None
        return ack

    async def publish_raw_many(
        self, messages: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> list[Ack]:
        """Publish pipelined, in windows of at most ``publish_max_in_flight`` messages.

        A whole window is written before any ack is awaited, so the client flushes
        it in a few socket writes. Acks come back on one reply subscription and are
        counted into the window, which completes on a single future: no future,
        timer or semaphore per message (nats-py's ``publish_async`` spends more on
        those than on the message itself).
        """
        window = self.settings.publish_max_in_flight
        acks: list[Ack] = []
        try:
            for start in range(0, len(messages), window):
                acks.extend(await self._publish_window(messages[start : start + window]))
        except (NatsTimeout, TimeoutError, NoRespondersError, ConnectionClosedError) as exc:
            raise BusUnavailable(
                f"JetStream acknowledged {len(acks)} of {len(messages)} messages, then "
                f"failed ({type(exc).__name__}); publishing them again is safe"
            ) from None
        return acks

    async def publish_raw_each(
        self, messages: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> list[Ack | FlowbusError]:
        """:meth:`publish_raw_many`, but one outcome per message: its ack, or the error
        JetStream answered for it alone (a refused message does not fail the others).
        Losing the connection still raises :class:`BusUnavailable` for them all."""
        window = self.settings.publish_max_in_flight
        out: list[Ack | FlowbusError] = []
        try:
            for start in range(0, len(messages), window):
                done = await self._window_results(messages[start : start + window])
                out.extend(r for r in done.results if r is not None)
        except (NatsTimeout, TimeoutError, NoRespondersError, ConnectionClosedError) as exc:
            raise BusUnavailable(
                f"JetStream acknowledged {len(out)} of {len(messages)} messages, then "
                f"failed ({type(exc).__name__})"
            ) from None
        return out

    async def _publish_window(
        self, messages: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> list[Ack]:
        return (await self._window_results(messages)).acks()

    async def _window_results(
        self, messages: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> _Window:
        replies = await self._reply_inbox()
        window = _Window(len(messages), asyncio.get_running_loop().create_future())
        wid = str(next(self._window_ids))
        self._windows[wid] = window
        try:
            prefix = f"{replies}.{wid}."
            for index, (subject, body, headers) in enumerate(messages):
                await self._nc.publish(subject, body, reply=f"{prefix}{index}", headers=headers)
            async with asyncio.timeout(self.settings.nats_request_timeout):
                await window.done
        finally:
            del self._windows[wid]
        return window

    async def _reply_inbox(self) -> str:
        if self._replies is None:
            inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{inbox}.*.*", cb=self._on_reply)
            self._replies = inbox
        return self._replies

    async def _on_reply(self, msg: Msg) -> None:
        # Reply subjects are <inbox>.<window id>.<index in the window>.
        head, _, index = msg.subject.rpartition(".")
        window = self._windows.get(head.rpartition(".")[2])
        if window is not None and index.isdigit():
            window.record(int(index), msg)

    # --- consuming ----------------------------------------------------------------

    async def consumer(
        self,
        durable: str,
        *,
        stream: str | None = None,
        filter_subjects: Sequence[str] | None = None,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int = 10_000,
        deliver_new: bool = False,
    ) -> Consumer:
        """A durable pull consumer (created or updated) on ``stream`` (default: events).

        ``deliver_new`` decides where a consumer created now starts; an existing one
        keeps its start (JetStream does not change it), e.g. the trigger consumer that
        :func:`events.layout.ensure_trigger_consumer` created with the stream.
        """
        stream = stream or self.layout.events_stream
        filters = list(filter_subjects or [])
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            deliver_policy=api.DeliverPolicy.NEW if deliver_new else api.DeliverPolicy.ALL,
        )
        if deliver_new:
            await self._keep_start(stream, durable, config)
        if len(filters) == 1:
            config.filter_subject = filters[0]
        elif filters:
            config.filter_subjects = filters
        consumer = Consumer(self._nc, self._js, stream, durable)
        try:
            await self._js.add_consumer(stream, config)
            await consumer._subscribe()
        except (NatsTimeout, NoRespondersError) as exc:
            raise BusUnavailable(f"could not create consumer {durable} on {stream}: {exc}") from None
        except APIError as exc:
            raise PublishFailed(
                f"JetStream refused consumer {durable} on {stream}: {exc.description}"
            ) from None
        return consumer

    async def _keep_start(self, stream: str, durable: str, config: api.ConsumerConfig) -> None:
        try:
            existing = (await self._js.consumer_info(stream, durable)).config
        except NotFoundError:
            return
        except (NatsTimeout, NoRespondersError) as exc:
            raise BusUnavailable(f"could not read consumer {durable} on {stream}: {exc}") from None
        config.deliver_policy = existing.deliver_policy
        config.opt_start_seq = existing.opt_start_seq
        config.opt_start_time = existing.opt_start_time

    def tail(
        self, pattern: str = "*", *, since: datetime | None = None
    ) -> AsyncIterator[CloudEvent]:
        """Events matching ``pattern`` as they arrive, from ``since`` if given, else new ones."""
        return tailing.tail(self._js, self.layout, pattern, since=since)

    def stored(self, pattern: str, *, since: datetime,
               most: int | None = None) -> AsyncGenerator[CloudEvent, None]:
        """The stored events matching ``pattern`` from ``since``, oldest first, ending with
        the last one stored or after ``most`` (:func:`events.tailing.stored`)."""
        return tailing.stored(self._js, self.layout, pattern, since=since, most=most)

    # --- KV and objects -----------------------------------------------------------

    async def kv(self, bucket: str) -> KV:
        """A KV bucket of the layout (e.g. ``bus.layout.flow_runs``), bound once."""
        bound = self._bound.get(("kv", bucket))
        if not isinstance(bound, KV):
            bound = self._bound["kv", bucket] = KV(await self._js.key_value(bucket), bucket)
        return bound

    async def objects(self, bucket: str) -> Objects:
        """An object store of the layout (e.g. ``bus.layout.results``), bound once."""
        bound = self._bound.get(("objects", bucket))
        if not isinstance(bound, Objects):
            bound = Objects(await self._js.object_store(bucket), bucket, self.publish_raw_many)
            self._bound["objects", bucket] = bound
        return bound

    # --- inspection ---------------------------------------------------------------

    async def streams(self) -> list[api.StreamInfo]:
        """Info on the layout's streams (events, runs, logs, buckets, object stores).

        Each is asked for by name: JetStream lists streams a page at a time, and a
        server shared by many namespaces has more than one page.
        """
        infos = []
        for config in all_streams(self.layout, self.settings):
            assert config.name is not None
            try:
                infos.append(await self._js.stream_info(config.name))
            except NotFoundError:
                continue
        return infos

    async def consumers(self, stream: str) -> list[api.ConsumerInfo]:
        return list(await self._js.consumers_info(stream))

    async def destroy_layout(self) -> None:
        """Delete the whole namespace: every stream, bucket and object store. Irreversible."""
        self._bound.clear()
        await delete_layout(self._js, self.settings)

    async def delete_consumer(self, stream: str, durable: str) -> None:
        try:
            await self._js.delete_consumer(stream, durable)
        except NotFoundError:
            return


def _connect_options(
    settings: NatsSettings,
    name: str,
    on_disconnect: Callable[[], Awaitable[None]],
    on_reconnect: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
) -> dict[str, Any]:
    """nats.connect keyword arguments for ``settings`` (auth, TLS, reconnect)."""
    options: dict[str, Any] = {
        "servers": settings.nats_url,
        "name": name,
        "connect_timeout": settings.nats_connect_timeout,
        "allow_reconnect": True,
        # Try each server twice at start-up; reconnect forever once connected (below).
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "pending_size": 64 * 1024 * 1024,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
        options["inbox_prefix"] = subjects.inbox_prefix(settings.nats_user)
    if settings.nats_token:
        options["token"] = settings.nats_token
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca or settings.nats_tls_cert:
        context = ssl.create_default_context(cafile=settings.nats_tls_ca)
        if settings.nats_tls_cert:
            context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
        options["tls"] = context
    return options


class _Window:
    """The acks of one window of pipelined publishes, completed on one future."""

    __slots__ = ("done", "remaining", "results")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.results: list[Ack | FlowbusError | None] = [None] * size
        self.remaining = size
        self.done = done

    def record(self, index: int, msg: Msg) -> None:
        if index >= len(self.results) or self.results[index] is not None:
            return
        self.results[index] = _reply_to_ack(msg)
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def acks(self) -> list[Ack]:
        out = []
        for result in self.results:
            if isinstance(result, FlowbusError):
                raise result
            assert result is not None
            out.append(result)
        return out


def _reply_to_ack(msg: Msg) -> Ack | FlowbusError:
    if msg.headers and msg.headers.get("Status") == "503":
        return BusUnavailable("no JetStream stream answered for a published message")
    try:
        reply = json.loads(msg.data.decode())  # str: json.loads(bytes) sniffs the encoding
    except ValueError:
        return PublishFailed(f"JetStream sent an unreadable ack: {msg.data[:80]!r}")
    if "error" in reply:
        description = reply["error"].get("description", reply["error"])
        return PublishFailed(f"JetStream refused a message: {description}")
    return Ack(str(reply.get("stream", "")), int(reply.get("seq", 0)), bool(reply.get("duplicate")))
