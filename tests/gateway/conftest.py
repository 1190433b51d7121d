"""A real gateway on loopback over the test's NATS namespace, and a client for it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest
from gateway_helpers import ADMIN_KEY

from events.bus import Bus
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings
from orchestrator.control import ControlDesk
from tests.control_desk import control_desk


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(port=0, admin_api_key=ADMIN_KEY, stream_heartbeat_seconds=0.5)


@pytest.fixture
async def gateway(
    bus: Bus, gateway_settings: GatewaySettings, clock: ManualClock
) -> AsyncIterator[RunningGateway]:
    async with running(bus, gateway_settings, clock=clock) as gw:
        yield gw


@pytest.fixture
async def desk(bus: Bus) -> AsyncIterator[ControlDesk]:
    """The orchestrator's answers to the API's cancel and resume (no orchestrator process)."""
    async with control_desk(bus) as running_desk:
        yield running_desk


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client sending the bootstrap admin key."""
    async with aiohttp.ClientSession(
        base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as session:
        yield session


@pytest.fixture
async def anonymous(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client sending no key."""
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


StartGateway = Callable[..., AbstractAsyncContextManager[RunningGateway]]


@pytest.fixture
def start_gateway(bus: Bus, clock: ManualClock) -> StartGateway:
    """Start another gateway with changed settings: ``async with start_gateway(auth=False)``."""

    def start(**changes: Any) -> AbstractAsyncContextManager[RunningGateway]:
        settings = GatewaySettings(port=0, admin_api_key=ADMIN_KEY, **changes)
        return running(bus, settings, clock=clock)

    return start
