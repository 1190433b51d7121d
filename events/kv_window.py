"""Reads and compare-and-set writes of one KV bucket, sent together in windows.

A task worker claims the runs of every job one fetch returned, and finishes runs that
end at the same moment; each is a read or a compare-and-set of one record. Made
through nats-py's KV, each call pays its own reply inbox, timer and future wait. Here
the calls made while the event loop runs one batch of callbacks go out as one window:
written to the socket together, their replies received on one subscription and
matched by their index in the window, with one timer per window. A call's outcome is
its own: a conflict or a missing key fails only that call.

Reads are JetStream direct gets, which any replica may answer (see `events.kv`): use
them where a stale read only costs a lost compare-and-set; a decision that drops work
reads with ``KV.get(latest=True)``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.bus import Bus
from events.errors import BusUnavailable, FlowbusError, PublishFailed, UpdateConflict
from events.kv import EXPECTED_REVISION_HEADER, Entry, kv_subject

# JetStream's error code for a compare-and-set whose expected revision is not the key's.
_WRONG_LAST_SEQUENCE = 10071


class _Call:
    __slots__ = ("body", "future", "headers", "key", "subject")

    def __init__(self, key: str, subject: str, body: bytes, headers: dict[str, str] | None,
                 future: asyncio.Future[Any]) -> None:
        self.key, self.subject, self.body, self.headers = key, subject, body, headers
        self.future = future


class _Window:
    __slots__ = ("calls", "done", "remaining")

    def __init__(self, calls: list[_Call], done: asyncio.Future[None]) -> None:
        self.calls, self.done, self.remaining = calls, done, len(calls)


class KVWindow:
    """Windowed :meth:`get` and :meth:`cas` of one bucket over ``bus``'s connection."""

    def __init__(self, bus: Bus, bucket: str) -> None:
        self._nc = bus._nc  # events/ is the one package that talks to NATS itself
        self._timeout = bus.settings.nats_request_timeout
        self.bucket = bucket
        self._direct = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}."
        self._pending: list[_Call] = []
        self._windows: dict[str, _Window] = {}
        self._ids = itertools.count()
        self._senders: set[asyncio.Task[None]] = set()
        self._inbox = ""
        self._sub: Subscription | None = None

    @classmethod
    async def open(cls, bus: Bus, bucket: str) -> KVWindow:
        self = cls(bus, bucket)
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._inbox}.*.*", cb=self._on_reply)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def get(self, key: str) -> Entry | None:
        """The entry at ``key``, or None when absent or deleted (any replica answers)."""
        result: Entry | None = await self._call(key, self._direct + key, b"", None)
        return result

    async def cas(self, key: str, value: bytes, revision: int) -> int:
        """Store ``value`` if ``key`` is still at ``revision``; its new revision.
        :class:`UpdateConflict` if the key changed meanwhile."""
        result: int = await self._call(key, kv_subject(self.bucket, key), value,
                                       {EXPECTED_REVISION_HEADER: str(revision)})
        return result

    def _call(self, key: str, subject: str, body: bytes,
              headers: dict[str, str] | None) -> asyncio.Future[Any]:
        if self._sub is None:
            raise BusUnavailable(f"KV {self.bucket}: the window is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(key, subject, body, headers, future))
        if len(self._pending) == 1:  # the first call of this moment starts the window
            sender = loop.create_task(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return future

    async def _send(self) -> None:
        calls, self._pending = self._pending, []
        wid = str(next(self._ids))
        window = _Window(calls, asyncio.get_running_loop().create_future())
        self._windows[wid] = window
        try:
            prefix = f"{self._inbox}.{wid}."
            for index, call in enumerate(calls):
                await self._nc.publish(call.subject, call.body, reply=f"{prefix}{index}",
                                       headers=call.headers)
            async with asyncio.timeout(self._timeout):
                await window.done
        except Exception as exc:  # no answer in time, or the connection is gone
            error = BusUnavailable(f"KV {self.bucket}: no answer ({type(exc).__name__}); NATS "
                                   "is unreachable or overloaded")
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(error)
        finally:
            del self._windows[wid]

    async def _on_reply(self, msg: Msg) -> None:
        # Reply subjects are <inbox>.<window id>.<index in the window>.
        head, _, index = msg.subject.rpartition(".")
        window = self._windows.get(head.rpartition(".")[2])
        if window is None or not index.isdigit() or int(index) >= len(window.calls):
            return
        call = window.calls[int(index)]
        if call.future.done():  # a repeated reply, or a caller that gave up
            return
        try:
            call.future.set_result(_read_entry(call.key, msg) if call.headers is None
                                   else _read_ack(call.key, msg))
        except FlowbusError as exc:
            call.future.set_exception(exc)
        except (KeyError, ValueError) as exc:  # a reply that is not what JetStream sends
            call.future.set_exception(PublishFailed(f"unreadable reply for {call.key!r}: {exc!r}"))
        window.remaining -= 1
        if window.remaining == 0 and not window.done.done():
            window.done.set_result(None)


def _read_entry(key: str, msg: Msg) -> Entry | None:
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == "404":
        return None
    if status:
        raise BusUnavailable(f"reading {key!r} answered {status} {headers.get('Description', '')}")
    if headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return Entry(key, msg.data, int(headers["Nats-Sequence"]))


def _read_ack(key: str, msg: Msg) -> int:
    if msg.headers and msg.headers.get("Status") == "503":
        raise BusUnavailable("no JetStream stream answered a KV write")
    try:
        reply = json.loads(msg.data)
    except ValueError:
        raise PublishFailed(f"JetStream sent an unreadable ack: {msg.data[:80]!r}") from None
    error = reply.get("error")
    if error is None:
        return int(reply["seq"])
    if error.get("err_code") == _WRONG_LAST_SEQUENCE:
        raise UpdateConflict(f"key {key!r} changed since the revision written against")
    raise PublishFailed(f"JetStream refused a KV write of {key!r}: {error.get('description', error)}")


__all__ = ["KVWindow"]
