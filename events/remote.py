"""A connection to another application's NATS, for event sources.

The flowbus bus (:mod:`events.bus`) owns flowbus's own streams; a source reads
subjects and streams that some other application owns, often on another server
with other credentials. This module keeps that reading inside ``events/`` (the
only package that talks to nats-py)::

    remote = await RemoteNats.connect(RemoteNatsOptions(servers=["nats://other:4222"]))
    async with remote.subscribe("orders.>", queue="flowbus-source-orders", limit=1000) as sub:
        msg = await sub.next()

The connection does not reconnect by itself: when the server goes away,
:attr:`RemoteNats.closed` is set and reading raises :class:`BusUnavailable`, so the
caller's backoff (and its status) decides what happens next.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import APIError, NotFoundError

from events.bus import redact
from events.errors import BusUnavailable, FlowbusError


class RemoteAuthFailed(FlowbusError):
    """The remote NATS refused the credentials."""


class RemoteRefused(FlowbusError):
    """The remote NATS refused a request (no such stream, bad consumer, permissions)."""


@dataclass(frozen=True)
class RemoteNatsOptions:
    """How to reach the remote server; secrets already resolved by the caller."""

    servers: list[str]
    name: str = "flowbus-source"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    tls: bool = False


@dataclass(frozen=True, slots=True)
class RemoteMessage:
    """One message: subject, body, headers, and (from JetStream) its stream position."""

    subject: str
    data: bytes
    headers: dict[str, str]
    stream_seq: int | None = None
    num_pending: int | None = None
    _msg: Msg | None = field(default=None, repr=False)

    async def ack(self) -> None:
        """Acknowledge (JetStream only; a no-op for core NATS)."""
        if self._msg is not None and self.stream_seq is not None:
            try:
                await self._msg.ack()
            except ConnectionClosedError as exc:
                raise BusUnavailable("connection closed before the ack was sent") from exc

    async def nak(self, delay: float | None = None) -> None:
        """Hand back for redelivery (JetStream only)."""
        if self._msg is not None and self.stream_seq is not None:
            try:
                await self._msg.nak(delay=delay)
            except ConnectionClosedError:
                return  # the server redelivers after ack_wait anyway


class RemoteSubscription:
    """Core NATS messages, through a bounded queue (the caller's backpressure)."""

    def __init__(self, remote: RemoteNats, limit: int) -> None:
        self._remote = remote
        self.queue: asyncio.Queue[RemoteMessage] = asyncio.Queue(maxsize=limit)

    async def _on_message(self, msg: Msg) -> None:
        await self.queue.put(RemoteMessage(msg.subject, msg.data, dict(msg.headers or {})))

    async def next(self) -> RemoteMessage:
        """The next message; :class:`BusUnavailable` once the connection is gone."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        getter = asyncio.ensure_future(self.queue.get())
        closed = asyncio.ensure_future(self._remote.closed.wait())
        try:
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise BusUnavailable(f"connection to NATS lost: {self._remote.last_error or 'closed'}")

    def drain_nowait(self, n: int) -> list[RemoteMessage]:
        out: list[RemoteMessage] = []
        while len(out) < n and not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


class RemoteConsumer:
    """A durable pull consumer on a remote stream."""

    def __init__(self, remote: RemoteNats, sub: nats.js.JetStreamContext.PullSubscription) -> None:
        self._remote = remote
        self._sub = sub

    async def fetch(self, n: int, max_wait: float = 1.0) -> list[RemoteMessage]:
        if self._remote.closed.is_set():
            raise BusUnavailable(f"connection to NATS lost: {self._remote.last_error or 'closed'}")
        try:
            msgs = await self._sub.fetch(batch=n, timeout=max_wait)
        except (NatsTimeout, TimeoutError):
            if self._remote.closed.is_set():
                raise BusUnavailable("connection to NATS lost while fetching") from None
            return []
        except ConnectionClosedError as exc:
            raise BusUnavailable("connection to NATS lost while fetching") from exc
        out: list[RemoteMessage] = []
        for m in msgs:
            meta = m.metadata
            out.append(RemoteMessage(m.subject, m.data, dict(m.headers or {}),
                                     int(meta.sequence.stream), int(meta.num_pending), m))
        return out


def _auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "authorization" in text or "authentication" in text or "permissions" in text


class RemoteNats:
    """A connection to a NATS server flowbus does not own."""

    def __init__(self, nc: NatsClient, options: RemoteNatsOptions) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=options.request_timeout)
        self.options = options
        self.closed = asyncio.Event()
        self.last_error: str | None = None

    @classmethod
    async def connect(cls, options: RemoteNatsOptions) -> RemoteNats:
        """Connect once; :class:`RemoteAuthFailed` or :class:`BusUnavailable` saying why not."""
        servers = ", ".join(redact(s) for s in options.servers)
        holder: list[RemoteNats] = []
        errors: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)
            if holder:
                holder[0].last_error = str(exc) or type(exc).__name__

        async def on_closed() -> None:
            if holder:
                holder[0].closed.set()

        kwargs: dict[str, object] = {
            "servers": options.servers, "name": options.name,
            "connect_timeout": options.connect_timeout, "allow_reconnect": False,
            "max_reconnect_attempts": 0, "error_cb": on_error, "closed_cb": on_closed,
        }
        if options.user:
            kwargs["user"], kwargs["password"] = options.user, options.password or ""
        if options.token:
            kwargs["token"] = options.token
        if options.tls:
            kwargs["tls"] = ssl.create_default_context()
        nc = NatsClient()
        try:
            await asyncio.wait_for(nc.connect(**kwargs),  # type: ignore[arg-type]
                                   timeout=options.connect_timeout * 2 + 1)
        except asyncio.CancelledError:  # the caller gave up (its source is stopping)
            await _abandon(nc)
            raise
        except (NoServersError, OSError, TimeoutError, NatsTimeout, nats.errors.Error) as exc:
            await _abandon(nc)
            for cause in [exc, *errors]:
                if _auth_error(cause):
                    raise RemoteAuthFailed(
                        f"authentication failed at {servers}: {cause}"
                    ) from None
            raise BusUnavailable(f"cannot reach NATS at {servers}: {exc or type(exc).__name__}") from None
        remote = cls(nc, options)
        holder.append(remote)
        return remote

    @asynccontextmanager
    async def subscribe(self, subject: str, *, queue: str, limit: int,
                        pending_limit: int = 65_536) -> AsyncIterator[RemoteSubscription]:
        """Messages on ``subject`` in queue group ``queue``, at most ``limit`` queued here."""
        holder = RemoteSubscription(self, limit)
        try:
            sub = await self._nc.subscribe(subject, queue=queue, cb=holder._on_message,
                                           pending_msgs_limit=pending_limit)
        except nats.errors.Error as exc:
            raise RemoteRefused(f"cannot subscribe to {subject!r}: {exc}") from None
        try:
            try:
                await self._nc.flush(timeout=max(1, int(self.options.request_timeout)))
            except (OSError, nats.errors.Error) as exc:
                # A server refusing credentials may close the socket as it says so.
                if self.last_error and _auth_error(Exception(self.last_error)):
                    raise RemoteAuthFailed(f"authentication failed: {self.last_error}") from None
                raise BusUnavailable(f"the NATS server closed the connection: {exc}") from None
            if self.last_error and _auth_error(Exception(self.last_error)):
                raise RemoteAuthFailed(f"not allowed to subscribe to {subject!r}: "
                                       f"{self.last_error}")
            yield holder
        finally:
            try:
                await sub.unsubscribe()
            except (ConnectionClosedError, nats.errors.BadSubscriptionError):
                pass

    async def consumer(self, stream: str, durable: str, *, filter_subject: str | None,
                       deliver_new: bool, ack_wait: float, max_ack_pending: int) -> RemoteConsumer:
        """Create (or update) the durable pull consumer ``durable`` on ``stream`` and bind to it."""
        config = api.ConsumerConfig(
            durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ack_wait,
            max_ack_pending=max_ack_pending, filter_subject=filter_subject,
            deliver_policy=api.DeliverPolicy.NEW if deliver_new else api.DeliverPolicy.ALL,
        )
        try:
            await self._js.add_consumer(stream, config)
            sub = await self._js.pull_subscribe_bind(durable=durable, stream=stream)
        except NotFoundError:
            raise RemoteRefused(f"stream {stream!r} does not exist on the source's server") from None
        except APIError as exc:
            if exc.code == 404 or exc.err_code == 10059:
                raise RemoteRefused(
                    f"stream {stream!r} does not exist on the source's server") from None
            raise RemoteRefused(
                f"JetStream refused consumer {durable!r} on stream {stream!r}: {exc.description}"
            ) from None
        except (NatsTimeout, TimeoutError, NoRespondersError) as exc:
            raise BusUnavailable(f"JetStream did not answer for stream {stream!r} "
                                 f"({type(exc).__name__}); is JetStream enabled there?") from None
        return RemoteConsumer(self, sub)

    async def close(self) -> None:
        if not self._nc.is_closed:
            try:
                await self._nc.close()
            except (ConnectionClosedError, TimeoutError):
                pass
        self.closed.set()


async def _abandon(nc: NatsClient) -> None:
    """Close what a failed connect left open (nats-py keeps the socket on an auth error)."""
    try:
        await nc.close()
    except Exception:  # closing a half-open client can fail in any way; it is gone either way
        pass
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        transport.close()
        try:
            await transport.wait_closed()
        except OSError:  # the server already dropped it (e.g. after refusing credentials)
            pass
