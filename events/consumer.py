"""Consuming from JetStream: a durable pull consumer and the messages it delivers.

Built by :meth:`events.bus.Bus.consumer`; the rest of flowbus sees only
:class:`Consumer` and :class:`Delivery`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import time
from datetime import datetime

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext, api

from events.cloudevent import CloudEvent, decode
from events.errors import BusUnavailable


class Delivery:
    """One message fetched from a consumer, with its acknowledgement verbs."""

    __slots__ = ("_event", "_msg")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self._event: CloudEvent | None = None

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._msg.headers or {})

    @property
    def event(self) -> CloudEvent:
        """The message decoded as a CloudEvent (InvalidEvent if it is not one)."""
        if self._event is None:
            self._event = decode(self._msg.data)
        return self._event

    @property
    def num_delivered(self) -> int:
        return int(self._msg.metadata.num_delivered)

    @property
    def stream_seq(self) -> int:
        return int(self._msg.metadata.sequence.stream)

    @property
    def timestamp(self) -> datetime:
        return self._msg.metadata.timestamp

    async def ack(self, *, confirm: bool = True) -> None:
        """Acknowledge, and wait until JetStream confirmed it (no redelivery after this).

        With ``confirm=False`` the ack is only written to the connection, where it
        shares socket writes with others; if it is lost the message is redelivered
        after the consumer's ack wait. Use it only where a redelivery is harmless.
        """
        if confirm:
            await self._msg.ack_sync()
        else:
            await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        """Hand the message back for redelivery, after ``delay`` seconds if given."""
        await self._msg.nak(delay=delay)

    async def in_progress(self) -> None:
        """Reset the ack timer: the work goes on (doubles as a heartbeat)."""
        await self._msg.in_progress()

    async def term(self) -> None:
        """Never deliver this message again (it can never be processed)."""
        await self._msg.term()


class Consumer:
    """A durable pull consumer: fetch exactly as many messages as there is room for.

    Pull requests are issued on our own inbox, one reply subject per request, so the
    consumer knows how many messages the live requests may still bring: JetStream
    ends an expired request with a status on its subject that says how many of its
    messages it did not deliver (``Nats-Pending-Messages``). Only the total owed is
    counted: JetStream spreads messages over the open requests in turn, so which
    request a message answered is not known (counting them against the oldest one
    drifted, and the consumer then waited for messages no request would bring). A fetch
    returns as soon as one message is there (with whatever else already arrived),
    and the requests it leaves open stay within the room the caller asked for: a
    later fetch takes what they delivered first, then asks only for the rest. A
    request that expires (JetStream answers 408) wakes a waiting fetch, which asks
    again at once, so no message waits for a fetch to time out.
    """

    def __init__(self, nc: NatsClient, js: JetStreamContext, stream: str, durable: str) -> None:
        self._nc = nc
        self._js = js
        self.stream = stream
        self.durable = durable
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._ready: collections.deque[Msg] = collections.deque()
        self._open: dict[str, float] = {}  # live requests: id -> when to stop counting it
        self._owed = 0  # messages the live requests may still bring, all together
        self._request_ids = itertools.count()
        self._wake = asyncio.Event()
        self._unavailable = False  # a request was answered 503 (no responders)

    async def _subscribe(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            # A message carries its own subject, not the request's: it counts against
            # the total owed (see the class docstring).
            self._ready.append(msg)
            self._owed = max(0, self._owed - 1)
            if self._owed == 0:
                self._open.clear()  # every request got its batch: none is live
            self._wake.set()
        elif status != "100":  # 404/408/409 on the request's own subject: it is over
            if status == "503":  # no responders: a cluster is electing a leader, or it is gone
                self._unavailable = True
            if self._open.pop(msg.subject.rpartition(".")[2], None) is not None:
                self._settle(msg.headers.get("Nats-Pending-Messages") if msg.headers else None)
                self._wake.set()

    def _settle(self, pending: str | None) -> None:
        """A request ended with ``pending`` of its messages undelivered: owed no more."""
        if not self._open:
            self._owed = 0
        elif pending is not None and pending.isdigit():
            self._owed = max(0, self._owed - int(pending))
        # Without the count (a status that does not say it), the rest stays owed until
        # the other live requests end or expire: a late fetch, never a lost message.

    def _credit(self) -> int:
        """Messages already here or still owed by live requests."""
        now = time.monotonic()
        expired = [r for r, deadline in self._open.items() if deadline < now]
        for rid in expired:
            del self._open[rid]  # its 408 was lost (e.g. a reconnect): stop counting it
        if expired and not self._open:
            self._owed = 0
        return len(self._ready) + self._owed

    async def _request(self, n: int, expires: float) -> None:
        rid = str(next(self._request_ids))
        body = json.dumps({"batch": n, "expires": int(expires * 1e9)}).encode()
        self._open[rid] = time.monotonic() + expires + _REQUEST_GRACE
        self._owed += n
        await self._nc.publish(self._next, body, reply=f"{self._inbox}.{rid}")

    def _take(self, n: int) -> list[Delivery]:
        out: list[Delivery] = []
        while self._ready and len(out) < n:
            out.append(Delivery(self._ready.popleft()))
        return out

    async def fetch(self, n: int, max_wait: float = 1.0) -> list[Delivery]:
        """Up to ``n`` messages, waiting at most ``max_wait`` s for the first; [] if none."""
        if n <= 0:
            return []
        if self._sub is None:
            raise BusUnavailable(f"consumer {self.durable} is closed")
        if self._ready:
            return self._take(n)
        deadline = time.monotonic() + max_wait
        try:
            while True:
                credit = self._credit()
                # While a request is open, arriving messages flow without waiting: top
                # it up only by a sizeable amount, not one pull request per free slot.
                if n > credit and (credit == 0 or 2 * (n - credit) >= n):
                    await self._request(n - credit, max_wait)
                left = deadline - time.monotonic()
                if self._ready or left <= 0:
                    return self._take(n)
                if self._unavailable:
                    # Not a crash: the caller backs off and fetches again (a leader
                    # election answers 503 for a moment).
                    self._unavailable = False
                    raise BusUnavailable(f"no server answers for consumer {self.durable} (503)")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._wake.wait()
        except ConnectionClosedError as exc:
            raise BusUnavailable(f"connection closed while fetching from {self.durable}") from exc

    async def info(self) -> api.ConsumerInfo:
        info: api.ConsumerInfo = await self._js.consumer_info(self.stream, self.durable)
        return info

    async def close(self) -> None:
        """Stop fetching; the durable consumer and its position stay on the server.

        Messages delivered but not yet fetched are handed back for redelivery.
        """
        sub, self._sub = self._sub, None
        while self._ready:
            with contextlib.suppress(Exception):
                await self._ready.popleft().nak()
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except (ConnectionClosedError, nats.errors.BadSubscriptionError):
            pass


_REQUEST_GRACE = 2.0  # after its expiry, a request whose 408 never came stops counting
