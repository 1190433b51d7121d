"""Fixtures of the automation tests: a clock, an orchestrator, an HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from events.bus import Bus
from orchestrator.service import Orchestrator
from tests.automations.support import ManualClock, Receiver, start


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def orchestrator(bus: Bus, clock: ManualClock) -> AsyncIterator[Orchestrator]:
    running = await start(bus, clock)
    try:
        yield running.orch
    finally:
        await running.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    try:
        yield server
    finally:
        await server.close()
