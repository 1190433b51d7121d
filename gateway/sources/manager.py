"""The sources of a gateway: watch the definitions, run the enabled ones, stop the others.

    stop = asyncio.Event()
    await run_sources(bus, SourcesSettings(), stop)

Every gateway runs every enabled source. Brokers that share a subscription's load do
the rest (NATS queue groups and JetStream pull consumers, MQTT ``$share/``
subscriptions, AMQP competing consumers); an MQTT source without shared
subscriptions runs on one gateway at a time through a lease (:mod:`.lease`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from events.bus import Bus
from events.errors import FlowbusError
from events.source_activity import activity_key
from events.source_store import DEFINITION_PREFIX, STATUS_PREFIX, SourceStore
from events.sources import Source, SourceState
from gateway.sources.metrics import SourceMetrics
from gateway.sources.runner import RunnerContext, SourceRunner
from gateway.sources.settings import SourcesSettings

log = logging.getLogger("flowbus.gateway.sources")


@dataclass
class _Running:
    source: Source
    runner: SourceRunner
    task: asyncio.Task[None]


class SourceManager:
    """Keeps the set of running sources equal to the enabled definitions."""

    def __init__(self, ctx: RunnerContext) -> None:
        self.ctx = ctx
        self.running: dict[str, _Running] = {}
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and run until ``stop``; then drain every source and return."""
        watcher = asyncio.ensure_future(self._watch_forever())
        try:
            done, _ = await asyncio.wait({watcher, asyncio.ensure_future(stop.wait())},
                                         return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                watcher.result()
        finally:
            watcher.cancel()
            # Bounded: a watch stuck in its client's unsubscribe must not hold up the drain.
            await asyncio.wait({watcher}, timeout=5)
            await asyncio.gather(*(self._stop(name) for name in list(self.running)))

    async def _watch_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self._load_current()
                self.ready.set()
                async for change in self.ctx.store.sources.watch(DEFINITION_PREFIX + "*"):
                    attempt = 0
                    await self.apply(change.key.removeprefix(DEFINITION_PREFIX), change.value)
            except Exception as exc:  # the bus went away; keep what runs, watch again later
                delay = min(self.ctx.settings.backoff_max_seconds, 0.5 * 2 ** min(attempt, 6))
                attempt += 1
                log.warning("watching source definitions failed (%s); again in %.1f s",
                            exc, delay)
                await self.ctx.sleep(delay)

    async def _load_current(self) -> None:
        wanted = {}
        for key in await self.ctx.store.sources.keys():
            if key.startswith(DEFINITION_PREFIX):
                entry = await self.ctx.store.sources.get(key)
                if entry is not None:
                    wanted[key.removeprefix(DEFINITION_PREFIX)] = entry.value
        for name in list(self.running):
            if name not in wanted:
                await self.apply(name, None)
        for name, value in wanted.items():
            await self.apply(name, value)

    async def apply(self, name: str, value: bytes | None) -> None:
        """Bring source ``name`` in line with its definition (None: deleted)."""
        source: Source | None = None
        if value is not None:
            try:
                source = Source.model_validate_json(value)
            except ValidationError as exc:
                log.error("source %s: stored definition is invalid, not running it: %s", name, exc)
                await self._status(name, "error", f"stored definition is invalid: {exc}")
                source = None
        current = self.running.get(name)
        if current is not None and source is not None and current.source == source:
            return
        if current is not None:
            await self._stop(name)
        if source is None:
            if value is None:
                self.ctx.metrics.forget(name)
                await self._forget_status(name)
            return
        if source.paused:
            await self._status(name, "paused")
            return
        runner = SourceRunner(source, self.ctx)
        task = asyncio.create_task(runner.run(), name=f"source-{name}")
        self.running[name] = _Running(source, runner, task)

    async def _stop(self, name: str) -> None:
        current = self.running.pop(name, None)
        if current is None:
            return
        current.runner.stop()
        done, _ = await asyncio.wait({current.task},
                                     timeout=self.ctx.settings.drain_timeout_seconds)
        if not done:
            log.warning("source %s did not stop within the drain timeout; cancelling", name)
            current.task.cancel()
            await asyncio.wait({current.task})
        elif current.task.exception() is not None:
            log.error("source %s ended with %r", name, current.task.exception())

    async def _status(self, name: str, state: str, reason: str | None = None) -> None:
        status = SourceState.model_validate({"state": state, "reason": reason,
                                             "gateway": self.ctx.settings.gateway_id,
                                             "updated": datetime.now(UTC)})
        try:
            await self.ctx.store.put_status(name, status)
        except FlowbusError as exc:
            log.debug("source %s: could not write status: %s", name, exc)


    async def _forget_status(self, name: str) -> None:
        # A stopped runner may have written once more after the delete: remove it again.
        try:
            await self.ctx.store.sources.delete(STATUS_PREFIX + name)
            await self.ctx.store.sources.delete(activity_key(name))
        except FlowbusError as exc:
            log.debug("source %s: could not remove status: %s", name, exc)


async def run_sources(bus: Bus, settings: SourcesSettings, stop: asyncio.Event, *,
                      registry: CollectorRegistry | None = None,
                      ready: asyncio.Event | None = None) -> None:
    """Run this gateway's sources over ``bus`` until ``stop`` is set, then drain them.

    ``registry`` receives the ``flowbus_source_*`` metrics (the gateway's, so its
    ``/metrics`` shows them); ``ready`` is set once the current definitions are running.
    """
    if not settings.enabled:
        if ready is not None:
            ready.set()
        await stop.wait()
        return
    ctx = RunnerContext(bus, await SourceStore.open(bus), settings, SourceMetrics(registry))
    manager = SourceManager(ctx)
    if ready is not None:
        waiter = asyncio.ensure_future(_relay(manager.ready, ready))
    try:
        await manager.run(stop)
    finally:
        if ready is not None:
            waiter.cancel()
            await asyncio.wait({waiter})


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
