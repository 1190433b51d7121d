"""An event sink that publishes on an event loop's own connection (the task worker's).

A task worker's run bodies run in threads while its event loop claims and finishes
runs on one NATS connection. The process-wide :class:`~flowbus._nats_sink.NatsSink`
would hand every batch from the body thread to a sink thread, from there to a second
event loop with a second connection, and wait for the outcome across threads again.
:class:`LoopSink` skips those hops: a body thread appends its events and log lines to
a list and, when the publisher is idle, wakes it on the worker's loop, which publishes
what has accumulated as one pipelined window on the worker's connection (every
message acked, the acks read together), and waits for those; what arrives meanwhile
goes in the next window. Windows go out one after another, so every run's events and
log lines are stored in the order they were emitted.

Like :class:`~flowbus._sink.BufferedSink` it is bounded (a body thread waits while
``maxsize`` items are unpublished), a failed window is reported and dropped, and
:meth:`flush` (from a body thread) waits until what was handed over is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from events.batches import publish_batches
from events.bus import Bus
from events.cloudevent import from_dict
from events.errors import FlowbusError
from flowbus import _sink
from flowbus._nats_sink import log_messages
from flowbus._sink_metrics import count_states

Message = tuple[str, bytes, dict[str, str] | None]


class LoopSink:
    """Publishes events and log records on ``bus``, from the loop the sink is started on."""

    def __init__(self, bus: Bus, *, maxsize: int = 10_000, batch_size: int = 512) -> None:
        if maxsize <= 0 or batch_size <= 0:
            raise ValueError("LoopSink maxsize and batch_size must be > 0")
        self.bus, self.maxsize, self.batch_size = bus, maxsize, batch_size
        self.backpressure_count = 0
        self.error_count = 0
        self.published_count = 0
        self._cond = threading.Condition(threading.Lock())
        self._items: list[tuple[bool, dict[str, Any]]] = []
        # Items handed over so far and items published or dropped: a flush waits for
        # its own watermark; their difference is what the bound applies to.
        self._handed = 0
        self._settled = 0
        self._idle = False  # the publisher waits for items: the next one wakes it
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None  # the loop's thread
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []  # aflush() waiting

    def start(self) -> LoopSink:
        """Start the publisher on the running loop."""
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self._task = self._loop.create_task(self._run())
        return self

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._thread

    def _running(self) -> bool:
        return self._task is not None and not self._task.done() and self._loop is not None \
            and not self._loop.is_closed()

    def _put(self, item: tuple[bool, dict[str, Any]]) -> None:
        on_loop = self._on_loop()
        with self._cond:
            if self._closing:  # a body left running past the drain: nothing publishes now
                self.error_count += 1
                return
            if not on_loop and self._handed - self._settled >= self.maxsize:
                self.backpressure_count += 1
                while self._handed - self._settled >= self.maxsize and self._running():
                    self._cond.wait(0.1)
            self._items.append(item)
            self._handed += 1
            wake, self._idle = self._idle, False
        if wake and self._loop is not None:
            if on_loop:
                self._wake()
            else:
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop is closed: nothing publishes any more
                    pass

    def emit_event(self, event: dict[str, Any]) -> None:
        self._put((True, event))

    def emit_log(self, record: dict[str, Any]) -> None:
        self._put((False, record))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if not self._items:
                    if self._closing:
                        return
                    self._idle = True
                    self._waiter = waiter = loop.create_future()
                    batch = None
                else:
                    batch = self._items[:self.batch_size]
                    del self._items[:self.batch_size]
            if batch is None:
                await waiter
                continue
            try:
                await self._publish(batch)
            except Exception as exc:  # a bug here must not stop the publisher for good
                self._report(len(batch), exc)
            finally:
                with self._cond:
                    self._settled += len(batch)
                    self._cond.notify_all()
                for mark, done in [f for f in self._flushes if f[0] <= self._settled]:
                    self._flushes.remove((mark, done))
                    if not done.done():
                        done.set_result(None)

    async def _publish(self, batch: list[tuple[bool, dict[str, Any]]]) -> None:
        events = [item for is_event, item in batch if is_event]
        messages: list[Message] = []
        for event in events:
            try:
                messages.append(self.bus.event_message(from_dict(event)))
            except FlowbusError as exc:  # not an event the bus takes: this one is dropped
                self._report(1, exc)
        logs = log_messages(self.bus.layout, [item for is_event, item in batch if not is_event])
        groups = [group for group in (messages, logs) if group]  # one stream each
        if not groups:
            return
        try:
            outcomes = await publish_batches(self.bus, groups)
        except Exception as exc:  # NATS away: this window is lost, the next one tries again
            self._report(len(messages) + len(logs), exc)
            return
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, FlowbusError):
                self._report(len(group), outcome)
            else:
                self.published_count += len(group)
        count_states(events)

    def _report(self, count: int, exc: BaseException) -> None:
        self.error_count += 1
        print(f"flowbus: event publish failed, {count} dropped: {exc!r}", file=sys.stderr)

    def flush(self) -> None:
        """Wait until everything handed over so far is published (from any thread but
        the loop's own, where waiting would stop the publisher: there it returns; use
        :meth:`aflush`)."""
        if self._on_loop():
            return
        with self._cond:
            mark = self._handed
            while self._settled < mark and self._running():
                self._cond.wait(0.1)

    async def aflush(self) -> None:
        """Wait, on the loop, until everything handed over so far is published."""
        with self._cond:
            mark = self._handed
        if self._settled >= mark or not self._running() or self._task is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((mark, done))
        await asyncio.wait([done, self._task], return_when=asyncio.FIRST_COMPLETED)

    async def aclose(self) -> None:
        """Publish what is left, then stop the publisher (on the loop)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake()
        if self._task is not None:
            await self._task

    def close(self) -> None:
        """Stop taking items (the publisher ends with :meth:`aclose`, on the loop)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass


@contextlib.asynccontextmanager
async def loop_sink(bus: Bus) -> AsyncIterator[LoopSink | None]:
    """A :class:`LoopSink` on ``bus`` as the process's event sink while the block runs
    (then back to none chosen), unless a sink was chosen before: then that one stays
    and None is yielded."""
    if _sink.sink_chosen():
        yield None
        return
    sink = LoopSink(bus).start()
    _sink.set_event_sink(sink)
    try:
        yield sink
    finally:
        _sink.forget_event_sink()  # the next use reads the environment again
        await sink.aclose()


__all__ = ["LoopSink", "loop_sink"]
