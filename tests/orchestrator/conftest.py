"""Fixtures of the orchestrator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from events.bus import Bus
from orchestrator.service import Orchestrator
from tests.orchestrator.support import ManualClock, start


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def orchestrator(bus: Bus, clock: ManualClock) -> AsyncIterator[Orchestrator]:
    running = await start(bus, clock=clock)
    try:
        yield running.orch
    finally:
        await running.close()
