"""Keeping a gateway's run index equal to the flow-run bucket: a KV watch, re-read after
a failure, started and stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.context import GATEWAY
from gateway.runindex import RUN_INDEX, RunIndex

log = logging.getLogger("flowbus.gateway.runindex")
_RETRY_SECONDS = 1.0
_STOP_SECONDS = 5.0


class _Pass:
    """One read of the bucket: the keys of its initial values, then live changes."""

    def __init__(self, index: RunIndex) -> None:
        self.index = index
        self.seen: set[str] | None = set()

    def caught_up(self) -> None:
        self.index.finish_load(self.seen)
        self.seen = None

    def take(self, key: str, value: bytes | None, revision: int) -> None:
        if self.seen is not None:
            self.seen.add(key)
        self.index.apply(key, value, revision)


async def follow(index: RunIndex, app: web.Application, stop: asyncio.Event) -> None:
    """Keep ``index`` equal to the flow-run bucket until ``stop``; re-read after a failure."""
    gateway = app[GATEWAY]
    kv = await gateway.kv(gateway.bus.layout.flow_runs)
    while not stop.is_set():
        reading = _Pass(index)
        try:
            async for change in kv.watch(on_current=reading.caught_up):
                reading.take(change.key, change.value, change.revision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS went away: watch again once it is back
            if stop.is_set():
                return  # a cancellation the NATS client turned into an error
            log.warning("flow-run index watch failed (%s: %s); watching again",
                        type(exc).__name__, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _RETRY_SECONDS)


async def run_index_ctx(app: web.Application) -> AsyncIterator[None]:
    """The task that keeps the app's run index current (an aiohttp cleanup context).

    Shutdown is bounded: the task is cancelled (again, if the NATS client swallowed a
    cancellation) for at most ``_STOP_SECONDS``.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(follow(app[RUN_INDEX], app, stop), name="flowbus-run-index")
    try:
        yield
    finally:
        stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_SECONDS
        while not task.done() and loop.time() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("flow-run index task ended with %r", task.exception())
        elif not task.done():
            log.warning("flow-run index task did not stop within %s s", _STOP_SECONDS)
