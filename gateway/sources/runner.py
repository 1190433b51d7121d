"""Running one source: connect, deliver, and on any failure report it and retry with backoff.

A source never crash-loops: wrong credentials, a missing stream or a broker that went
away become a status (``error`` with the reason, and when the next attempt is) and an
exponential backoff with jitter up to ``FLOWBUS_SOURCES_BACKOFF_MAX_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events.bus import Bus
from events.errors import BusUnavailable, FlowbusError, PublishFailed
from events.source_store import SourceStore
from events.sources import MqttSubscription, Source, SourceState
from gateway.sources.activity import Activity
from gateway.sources.lease import Lease, LeaseLost
from gateway.sources.metrics import SourceMetrics
from gateway.sources.pipeline import Pipeline
from gateway.sources.secrets import SecretUnavailable
from gateway.sources.settings import SourcesSettings
from gateway.sources.types import Connector, ReconnectNow, SourceAuthFailed, SourceUnavailable

log = logging.getLogger("flowbus.gateway.sources")

Sleep = Callable[[float], Awaitable[None]]
_ACTIVITY_WRITE_TIMEOUT = 2.0


@dataclass
class RunnerContext:
    """What every runner of a gateway shares."""

    bus: Bus
    store: SourceStore
    settings: SourcesSettings
    metrics: SourceMetrics
    sleep: Sleep = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)


def needs_lease(source: Source) -> bool:
    """MQTT without shared subscriptions cannot share its load: one gateway at a time."""
    sub = source.subscription
    return isinstance(sub, MqttSubscription) and not sub.shared


def make_connector(source: Source, ctx: RunnerContext, stopping: asyncio.Event,
                   activity: Activity | None = None) -> Connector:
    """The connector for the source's kind (MQTT and AMQP clients are optional extras)."""
    gauge = ctx.metrics.lag.labels(source.name)

    def lag(pending: int) -> None:
        gauge.set(pending)
        if activity is not None:
            activity.lag(pending)

    if source.kind == "nats":
        from gateway.sources.nats_source import NatsConnector

        return NatsConnector(source, ctx.settings, stopping)
    if source.kind == "nats-jetstream":
        from gateway.sources.nats_source import JetStreamConnector

        return JetStreamConnector(source, ctx.settings, stopping, lag)
    if source.kind == "mqtt":
        try:
            from gateway.sources.mqtt_source import MqttConnector
        except ImportError:
            raise SourceUnavailable("MQTT sources need the aiomqtt package: "
                                    "pip install 'flowbus[mqtt]'") from None
        return MqttConnector(source, ctx.settings, stopping)
    try:
        from gateway.sources.amqp_source import AmqpConnector
    except ImportError:
        raise SourceUnavailable("AMQP sources need the aio-pika package: "
                                "pip install 'flowbus[amqp]'") from None
    return AmqpConnector(source, ctx.settings, stopping, lag)


class SourceRunner:
    """Keeps one source running on this gateway until :meth:`stop`."""

    def __init__(self, source: Source, ctx: RunnerContext) -> None:
        self.source = source
        self.ctx = ctx
        self.stopping = asyncio.Event()
        self._connected = ctx.metrics.connected.labels(source.name)
        self._attempt = 0
        self._is_connected = False
        self.activity = Activity(ctx.store.sources, source.name, ctx.settings.gateway_id)

    def backoff(self, attempt: int) -> float:
        s = self.ctx.settings
        ceiling = min(s.backoff_max_seconds, s.backoff_initial_seconds * 2 ** min(attempt, 30))
        return float(ceiling * (0.5 + self.ctx.rng.random() / 2))

    async def report(self, state: str, reason: str | None = None,
                     retry_in: float | None = None) -> None:
        status = SourceState.model_validate({
            "state": state, "reason": reason, "gateway": self.ctx.settings.gateway_id,
            "updated": datetime.now(UTC), "retry_in_seconds": retry_in,
        })
        try:
            await self.ctx.store.put_status(self.source.name, status)
        except FlowbusError as exc:  # the status is advisory; the bus may be down right now
            log.debug("source %s: could not write status: %s", self.source.name, exc)

    async def _on_connected(self) -> None:
        self._is_connected = True
        self._attempt = 0
        self._connected.set(1)
        await self.report("connected")
        log.info("source %s connected (%s)", self.source.name, self.source.kind)

    async def run(self) -> None:
        """Connect and deliver; report and back off on failures; return once stopping."""
        lease: Lease | None = None
        if needs_lease(self.source):
            kv = await self.ctx.bus.kv(self.ctx.bus.layout.leases)
            lease = Lease(kv, self.source.name, self.ctx.settings.gateway_id,
                          self.ctx.bus.settings.lease_ttl_seconds)
        keeper = asyncio.create_task(self.activity.keep(self.stopping),
                                     name=f"source-{self.source.name}-activity")
        try:
            while not self.stopping.is_set():
                reason = await self._attempt_once(lease)
                if self.stopping.is_set():
                    break
                if isinstance(reason, ReconnectNow):
                    log.info("source %s: %s", self.source.name, reason)
                    continue
                self._connected.set(0)
                self.ctx.metrics.connection_errors.labels(self.source.name).inc()
                delay = self.backoff(self._attempt)
                self._attempt += 1
                log.warning("source %s: %s; retrying in %.1f s", self.source.name, reason, delay)
                self.activity.error(reason)
                await self.report("error", reason, round(delay, 3))
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
        finally:
            self._connected.set(0)
            # Its last write happens once stopping is set; bounded, as every shutdown wait.
            await asyncio.wait({keeper}, timeout=_ACTIVITY_WRITE_TIMEOUT)
            if not keeper.done():
                keeper.cancel()
            if lease is not None:
                try:
                    await lease.release()
                except Exception as exc:  # the lease expires by its TTL anyway
                    log.debug("source %s: could not release its lease: %s", self.source.name, exc)

    async def _attempt_once(self, lease: Lease | None) -> str | ReconnectNow:
        """One connection's life; the reason it ended (ReconnectNow: go again at once)."""
        self._is_connected = False
        try:
            await self._until_stopped_unconnected(self._connection(lease))
            return "the broker closed the connection"
        except ReconnectNow as exc:
            return exc
        except SourceAuthFailed as exc:
            return f"authentication failed: {exc}"
        except (SourceUnavailable, SecretUnavailable) as exc:
            return str(exc)
        except (BusUnavailable, PublishFailed) as exc:
            return f"cannot store events: {exc}"
        except LeaseLost as exc:
            return str(exc)
        except Exception as exc:  # any client library failure becomes a status, not a crash
            log.exception("source %s failed", self.source.name)
            return f"{type(exc).__name__}: {exc}"

    async def _connection(self, lease: Lease | None) -> None:
        if lease is not None and not await lease.try_acquire():
            # Standby says nothing in the status: the lease holder's status is the one.
            log.info("source %s: standby, another gateway holds its lease", self.source.name)
            await lease.acquire()
        await self.report("starting")
        connector = make_connector(self.source, self.ctx, self.stopping, self.activity)
        pipeline = Pipeline(self.ctx.bus, self.ctx.store, self.source, self.ctx.metrics,
                            self.ctx.settings, self.activity)
        if lease is None:
            await connector.run(pipeline.deliver, self._on_connected)
        else:
            await _with_lease(lease, connector.run(pipeline.deliver, self._on_connected))

    async def _until_stopped_unconnected(self, work: Awaitable[None]) -> None:
        """Run ``work``; a stop that comes before it has connected cancels it at once.

        Until then it holds no message to deliver: waiting for a broker that does not
        answer (or for another gateway's lease) would only outlast the drain timeout.
        Once connected, the connector itself stops after delivering the batch in hand.
        """
        job = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done() and not self._is_connected:
                job.cancel()
                await asyncio.wait({job})
                return
            await job
        finally:
            stopped.cancel()
            if not job.done():  # this coroutine itself was cancelled
                job.cancel()
                await asyncio.wait({job})

    def stop(self) -> None:
        """Stop taking messages; the batch in hand is still delivered."""
        self.stopping.set()


async def _with_lease(lease: Lease, work: Awaitable[None]) -> None:
    keeper = asyncio.ensure_future(lease.keep())
    job = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({keeper, job}, return_when=asyncio.FIRST_COMPLETED)
        if keeper in done:
            job.cancel()
            await asyncio.wait({job})
            keeper.result()
        await job
    finally:
        for task in (keeper, job):
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

