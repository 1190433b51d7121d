"""Sources against real brokers: a second nats-server (another application's), and helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from events.bus import Bus
from events.cloudevent import CloudEvent
from events.embedded import EmbeddedNats
from events.source_store import SourceStore
from events.sources import SourceSpec, SourceState
from gateway.sources.manager import run_sources
from gateway.sources.settings import SourcesSettings
from tests.shutdown import stop_service

from .brokers import Mosquitto, RabbitMQ


@pytest.fixture(scope="session")
def other_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """Another application's nats-server: sources connect to it with their own settings."""
    with EmbeddedNats(tmp_path_factory.mktemp("other-nats")) as server:
        yield server


@pytest.fixture
def sources_settings() -> SourcesSettings:
    return SourcesSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.5,
                           batch_max=64, queue_max=256, drain_timeout_seconds=5,
                           gateway_id="gw-test")


@pytest.fixture
async def store(bus: Bus) -> SourceStore:
    return await SourceStore.open(bus)


@pytest.fixture
def start_sources(bus: Bus, sources_settings: SourcesSettings
                  ) -> Callable[..., Any]:
    """``async with start_sources():`` runs the gateway's sources for the block."""

    @asynccontextmanager
    async def start(settings: SourcesSettings | None = None) -> AsyncIterator[None]:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.ensure_future(run_sources(bus, settings or sources_settings, stop,
                                                 ready=ready))
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            yield
        finally:
            await stop_service(stop, task, what="the sources")

    return start


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def wait_until(check: Callable[[], Awaitable[Any]], within: float = 10.0,
                     what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.02)


async def wait_status(store: SourceStore, name: str, state: str,
                      within: float = 10.0) -> SourceState:
    async def check() -> SourceState | None:
        status = await store.status(name)
        return status if status is not None and status.state == state else None

    result: SourceState = await wait_until(check, within, f"source {name} to be {state}")
    return result


class EventLog:
    """Every event of the test's namespace, read from the events stream."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.events: list[CloudEvent] = []
        self._consumer: Any = None

    async def refresh(self) -> list[CloudEvent]:
        if self._consumer is None:
            self._consumer = await self.bus.consumer(unique("log"), ack_wait=60)
        while True:
            got = await self._consumer.fetch(500, max_wait=0.05)
            if not got:
                return self.events
            for delivery in got:
                self.events.append(delivery.event)
                await delivery.ack()

    async def wait_for(self, n: int, within: float = 10.0) -> list[CloudEvent]:
        async def check() -> list[CloudEvent] | None:
            events = await self.refresh()
            return events if len(events) >= n else None

        result: list[CloudEvent] = await wait_until(check, within, f"{n} events")
        return result


@pytest.fixture
def event_log(bus: Bus) -> EventLog:
    return EventLog(bus)


def spec(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate(fields)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto for the session (persistent sessions in a temp dir)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One RabbitMQ for the session: it is slow to start."""
    broker = RabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    try:
        yield broker
    finally:
        broker.stop()
